// Command serveplane-node is one multi-call binary holding the Kubernetes
// node components, kubelet and kube-proxy, and the node helpers that other
// files of this package add to components in their init(). As with
// serveplane-cluster (the parent directory), the first argument or the
// binary's base name (through a symlink) picks the component. It lives in the
// same Go module as the control plane so both are built from exactly the same
// k8s.io/kubernetes version and replace lines, yet it is a separate binary: a
// node does not need the control plane's code, and the control plane's cache
// key stays independent of this package.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"k8s.io/component-base/cli"
	// The upstream mains (cmd/kubelet, cmd/kube-proxy) import these for their
	// side effects: JSON logging format and client-go/version metrics.
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
)

var components = map[string]func() int{
	"kubelet":    func() int { return cli.Run(kubeletapp.NewKubeletCommand(context.Background())) },
	"kube-proxy": func() int { return cli.Run(proxyapp.NewProxyCommand()) },
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
