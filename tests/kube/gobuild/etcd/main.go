// Command etcd is the etcd server of the release that k8s.io/kubernetes pins, built here so the tests
// run kube-apiserver against the etcd it is released with.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
