package node

import (
	"context"

	"countd/actors"
	"countd/discovery"
)

// startDiscovery starts resolving -peers' and -newnode's DNS specs, at once
// and every -dns-interval, in a goroutine of its own (a slow or failing DNS
// server does not hold the start up). Each address found goes to the
// Supervisor as a RegisterPeer from discovery: a known member costs
// nothing, and an address that was removed, or that answered as this node,
// stays out. This node's own address is never sent. Close stops the loop
// before the actors. docs/design.md §7.
func (n *Node) startDiscovery() {
	if len(n.cfg.DNSPeers) == 0 {
		return
	}
	specs := make([]discovery.Spec, 0, len(n.cfg.DNSPeers))
	for _, s := range n.cfg.DNSPeers {
		spec, _ := discovery.ParseSpec(s) // Validate took every one
		specs = append(specs, spec)
	}
	loop := discovery.Start(discovery.Config{
		Specs:    specs,
		Interval: n.cfg.DNSInterval,
		Resolver: n.cfg.Resolver,
		Self:     n.addr,
		Register: func(addr string) {
			n.sys.Root.Send(n.sup, &actors.RegisterPeer{Addr: addr, FromDiscovery: true})
		},
		Logger: n.log,
	})
	n.undo.push(func(context.Context) error { loop.Stop(); return nil })
}
