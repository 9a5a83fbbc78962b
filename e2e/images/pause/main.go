// Command pause is the pod sandbox's process for the local Kubernetes node (containerd's sandbox_image), a
// stand-in for registry.k8s.io/pause, which cannot be pulled here.
//
// It holds the pod's namespaces open by doing nothing: it sleeps, reaps any child that is re-parented to it (it
// is PID 1 of the sandbox), and exits 0 on SIGTERM or SIGINT. Built with CGO_ENABLED=0 into a static binary that
// is the only file of a FROM scratch image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	// A child may have exited before Notify was set up.
	reap()
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		os.Exit(0)
	}
}

// reap collects every exited child without blocking; SIGCHLD signals coalesce, so one may stand for many.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
