"""Where GitOps-mode rollout documents come from: a directory of files (``files``).

A source hands the engine a ``controller.runtime.desired.DesiredState`` built by the one function
every source uses (``desired_state``), so a broken, duplicated or vanished document means the same in
GitOps mode as in Kubernetes mode (``controller.kube``).
"""
