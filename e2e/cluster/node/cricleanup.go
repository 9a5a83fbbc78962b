package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	remote "k8s.io/cri-client/pkg"
)

// cri-cleanup stops and removes every pod sandbox of a container runtime
// through its CRI endpoint, as the kubelet would: the runtime then runs the
// CNI teardown of each sandbox (veth, IP address, NAT rules) and kills its
// containers. A node's teardown uses it after the kubelet has stopped, so
// nothing the pods made on the machine outlives the node.
func init() {
	components["cri-cleanup"] = runCRICleanup
}

func runCRICleanup() int {
	flags := flag.NewFlagSet("cri-cleanup", flag.ContinueOnError)
	endpoint := flags.String("endpoint", "", "the CRI endpoint, e.g. unix:///run/containerd/containerd.sock")
	if err := flags.Parse(os.Args[1:]); err != nil || *endpoint == "" {
		fmt.Fprintln(os.Stderr, "usage: cri-cleanup --endpoint=unix:///path/to/socket")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runtime, err := remote.NewRemoteRuntimeServiceBuilder().WithEndpoint(*endpoint).WithConnectionTimeout(30 * time.Second).Build(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "connecting to %s: %v\n", *endpoint, err)
		return 1
	}
	sandboxes, err := runtime.ListPodSandbox(ctx, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "listing pod sandboxes: %v\n", err)
		return 1
	}
	failed := 0
	for _, sandbox := range sandboxes {
		if err := runtime.StopPodSandbox(ctx, sandbox.Id); err != nil {
			fmt.Fprintf(os.Stderr, "stopping sandbox %s: %v\n", sandbox.Id, err)
			failed++
			continue
		}
		if err := runtime.RemovePodSandbox(ctx, sandbox.Id); err != nil {
			fmt.Fprintf(os.Stderr, "removing sandbox %s: %v\n", sandbox.Id, err)
			failed++
		}
	}
	fmt.Printf("removed %d of %d pod sandboxes\n", len(sandboxes)-failed, len(sandboxes))
	if failed > 0 {
		return 1
	}
	return 0
}
