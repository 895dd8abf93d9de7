"""Tests against a real kube-apiserver and etcd, built from Go modules by ``make kube-binaries``."""
