// Command coredns is CoreDNS built with only the plugins a cluster's DNS
// needs. Upstream's main imports core/plugin, which links every plugin
// (route53, azure, clouddns, etcd, dnstap, ...) and their cloud SDKs; this one
// links the subset below, so the module needs fewer dependencies and builds
// faster. The plugins are upstream's own packages at the version go.mod pins.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// Each import registers its plugin with caddy in init().
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/whoami"
)

// directives is upstream's plugin.cfg order (zdirectives.go) restricted to the
// plugins imported above: the order decides how a query flows through the
// chain, so it must stay upstream's, not alphabetical. It covers the stock
// kubeadm Corefile (errors, health, ready, kubernetes, prometheus, forward,
// cache, loop, reload, loadbalance) plus log, hosts, bind (to listen on a
// chosen address such as loopback) and whoami (the Corefile CoreDNS falls back
// to when none is given uses it and log).
var directives = []string{
	"reload",
	"bind",
	"ready",
	"health",
	"prometheus",
	"errors",
	"log",
	"loadbalance",
	"cache",
	"hosts",
	"kubernetes",
	"loop",
	"forward",
	"whoami",
}

func main() {
	// The DNS server type reads Directives when a Corefile is parsed (inside
	// Run), so replacing the list here, before Run, is early enough.
	dnsserver.Directives = directives
	coremain.Run()
}
