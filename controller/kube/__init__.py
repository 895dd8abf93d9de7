"""Kubernetes mode: LambdaRollout custom resources in, the same engine as GitOps mode, ``.status`` out.

The Kubernetes wing sits above ``controller.runtime`` (which knows nothing of it) and is the only
package that imports kopf (``wiring`` alone does). Its parts:

- ``names``: the API group, kind, plural, finalizer and request annotation, spelled once;
- ``api``: a small JSON client for the controller's own writes (status, Events, finalizers, Leases);
- ``lease``: leader election on a ``coordination.k8s.io`` Lease;
- ``source``: the resources as the watch shows them, turned into the engine's ``DesiredState``;
- ``inbox``: control requests read from the resources' annotation (the engine's request inbox);
- ``status``: the engine's statuses and transitions as ``.status`` patches and Events;
- ``operator``: one replica: follows the resources always, runs the engine only while it leads;
- ``wiring``: kopf's handlers, login and the process around it all.

``kubectl lambda-rollouts`` (the control verbs through the resource, so RBAC decides) is a command of
its own, ``controller.commands.kubectl``.
"""
