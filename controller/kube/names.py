"""The names of the custom resource, spelled once for the operator, the kubectl plugin and the tests.

The API group, version and kind are the document's own (``controller.document.schema``, read from
the CRD): a document is a document whatever its source.
"""

from __future__ import annotations

from controller.document.schema import API_GROUP as GROUP
from controller.document.schema import API_VERSION as VERSION
from controller.document.schema import KIND

PLURAL = "lambdarollouts"
#: ``kubectl get`` / ``kubectl patch`` name of the resource.
RESOURCE = f"{PLURAL}.{GROUP}"
API_VERSION = f"{GROUP}/{VERSION}"
#: Kept on a resource with ``spec.revertOnDeletion: true`` until its alias is back on stable.
FINALIZER = f"{GROUP}/revert-on-deletion"
#: ``"<verb> <id> <epoch> <user>"``: a control request left by ``kubectl lambda-rollouts``.
REQUEST_ANNOTATION = f"{GROUP}/request"
#: What Events and Leases name as their writer.
COMPONENT = "lambda-rollouts"


def rollout_path(namespace: str, name: str, subresource: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
    return f"{path}/{subresource}" if subresource else path


def rollouts_path(namespace: str | None = None) -> str:
    """The collection: in one namespace, or across all of them with ``None``."""
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"/apis/{GROUP}/{VERSION}{scope}/{PLURAL}"


def annotation_pointer(key: str) -> str:
    """The JSON pointer of an annotation ("/" in the key is escaped as "~1")."""
    return "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")


__all__ = [
    "API_VERSION",
    "COMPONENT",
    "FINALIZER",
    "GROUP",
    "KIND",
    "PLURAL",
    "REQUEST_ANNOTATION",
    "RESOURCE",
    "VERSION",
    "annotation_pointer",
    "rollout_path",
    "rollouts_path",
]
