// Command upstream-kube is the real Kubernetes control plane of the
// end-to-end tests, linked once: kube-apiserver, kube-controller-manager,
// kube-scheduler and etcd, chosen by the first argument. Nothing here is
// the product; it only builds upstream's own commands from their modules.
package main

import (
	"fmt"
	"os"

	_ "time/tzdata" // CronJob time zones, as upstream's mains import it

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: upstream-kube kube-apiserver|kube-controller-manager|kube-scheduler|etcd [flags]")
		os.Exit(2)
	}
	name, args := os.Args[1], os.Args[2:]
	var command *cobra.Command
	switch name {
	case "kube-apiserver":
		command = apiserver.NewAPIServerCommand()
	case "kube-controller-manager":
		command = controllermanager.NewControllerManagerCommand()
	case "kube-scheduler":
		command = scheduler.NewSchedulerCommand()
	case "etcd":
		// etcdmain reads its flags from the whole argv, program name first.
		etcdmain.Main(append([]string{"etcd"}, args...))
		return
	default:
		fmt.Fprintf(os.Stderr, "upstream-kube: unknown command %q\n", name)
		os.Exit(2)
	}
	command.SetArgs(args)
	os.Exit(cli.Run(command))
}
