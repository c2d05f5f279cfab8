// etcd for the apiserver test tier, built from go.etcd.io/etcd/server/v3 by
// scripts/build-apiserver.ts: the same entry point as the upstream etcd binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
