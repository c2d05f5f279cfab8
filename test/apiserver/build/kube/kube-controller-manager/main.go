// kube-controller-manager for the cluster tier (Deployments, DaemonSets, EndpointSlices, garbage
// collection of the real cluster on this host), built from k8s.io/kubernetes by
// scripts/build-apiserver.ts: the same command as upstream cmd/kube-controller-manager.
package main

import (
	"os"
	_ "time/tzdata" // for CronJob Time Zone support

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // for client metric registration
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	command := app.NewControllerManagerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
