"""Where GitOps-mode rollout documents come from: a directory of files (``files``), and who writes them.

Several replicas may follow one directory: ``lease`` elects the one that writes (a lease in DynamoDB)
and ``replica`` runs an engine over the directory exactly while this process holds it.

A source hands the engine a ``controller.runtime.desired.DesiredState`` built by the one function
every source uses (``desired_state``), so a broken, duplicated or vanished document means the same in
GitOps mode as in Kubernetes mode (``controller.kube``).
"""
