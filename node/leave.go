package node

import (
	"context"
	"sync"
	"time"

	"countd/actors"
	"countd/wire"
)

// A graceful shutdown (Close, on SIGTERM or SIGINT) leaves the cluster.
// First the node tells each peer it reaches that it is leaving (POST
// /leave), so the peers list it as left at once and stop checking it: told
// any later, a health check failing while the node finishes its requests
// would show it suspect, and a slow finish down. Then the HTTP server stops
// taking requests and lets those in flight finish, and the PeerActors push
// what their peers lack (flushPeers). The leave names this process (its
// replica id), so those last pushes do not make it alive again on the
// peers; a push from the next process on the same address does
// (docs/design.md, section 7, "Graceful leave").

// maxLeaveWait bounds the leave, so that a peer that does not answer
// cannot hold up the rest of the shutdown.
const maxLeaveWait = time.Second

// leave tells every peer with a PeerActor (alive or suspect; one down,
// unauthorized or left would not hear it) that this node is leaving, at
// once, within ctx and maxLeaveWait. A peer it does not reach finds the node down from
// its health checks, as after a crash.
func (n *Node) leave(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, maxLeaveWait)
	defer cancel()
	d := time.Until(deadline(ctx))
	if d <= 0 {
		return nil
	}
	res, err := n.sys.Root.RequestFuture(n.sup, &actors.GetPeers{}, d).Result()
	if err != nil {
		return nil
	}
	req := &wire.LeaveRequest{From: n.addr, Replica: n.replica}
	var wg sync.WaitGroup
	for _, p := range res.(*actors.PeerList).Peers {
		if actors.Away(p.State) {
			continue
		}
		wg.Go(func() {
			if err := n.peerNet.Leave(ctx, p.Addr, req); err != nil {
				n.log.Info("could not tell a peer this node is leaving", "peer", p.Addr, "err", err)
			}
		})
	}
	wg.Wait()
	n.log.Info("left the cluster")
	return nil
}
