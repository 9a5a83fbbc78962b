// Command serveplane-cluster is one multi-call binary holding a whole
// Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kubectl. The first argument (or the binary's base name,
// when invoked through a symlink) picks the component; each component is
// meant to run in its own process.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	// The upstream mains import these for their side effects: JSON logging
	// format and client-go/version metrics registration.
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanagerapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

var components = map[string]func() int{
	"etcd":                    runEtcd,
	"kube-apiserver":          func() int { return cli.Run(apiserverapp.NewAPIServerCommand()) },
	"kube-controller-manager": func() int { return cli.Run(controllermanagerapp.NewControllerManagerCommand()) },
	"kube-scheduler":          func() int { return cli.Run(schedulerapp.NewSchedulerCommand()) },
	"kubectl":                 runKubectl,
}

func runKubectl() int {
	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// CheckErr prints kubectl's usual error text and exits non-zero.
		kubectlutil.CheckErr(err)
	}
	return 0
}

func usage() {
	names := make([]string, 0, len(components))
	for n := range components {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: %s COMPONENT [flags]\ncomponents: %v\n", filepath.Base(os.Args[0]), names)
}

func main() {
	// Keep cobra from treating "kubectl.exe"-style mouse launches specially.
	cobra.MousetrapHelpText = ""

	if run, ok := components[filepath.Base(os.Args[0])]; ok {
		os.Exit(run())
	}
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	run, ok := components[os.Args[1]]
	if !ok {
		usage()
		os.Exit(2)
	}
	// Drop the subcommand so each component's cobra command sees its own
	// flags in os.Args[1:], exactly as if it were its own binary.
	os.Args = append([]string{os.Args[1]}, os.Args[2:]...)
	os.Exit(run())
}
