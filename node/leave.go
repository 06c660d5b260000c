package node

import (
	"context"
	"sync"
	"time"

	"countd/actors"
	"countd/wire"
)

// A graceful shutdown (Close, on SIGTERM or SIGINT) leaves the cluster:
// the HTTP server stops taking requests and lets those in flight finish,
// the PeerActors push what their peers lack (flushPeers), and then the
// node tells each peer it reaches that it is leaving (POST /leave), so the
// peers list it as left at once instead of suspect and then down after
// -failures-before-down failed health checks, and stop checking it. The
// leave names this process (its replica id): a push from it that arrives
// after the leave does not make it alive again on the peer, a push from
// the next process on the same address does (docs/design.md, section 7,
// "Graceful leave").

// leaveShare is the part of what is left of the shutdown timeout that the
// flush leaves for the leave, at most maxLeaveWait.
const (
	leaveShare   = 4 // a quarter
	maxLeaveWait = time.Second
)

// flushAndLeave pushes what each peer lacks, then tells the peers this
// node is leaving, all within ctx.
func (n *Node) flushAndLeave(ctx context.Context) {
	reserve := min(time.Until(deadline(ctx))/leaveShare, maxLeaveWait)
	flush, cancel := context.WithDeadline(ctx, deadline(ctx).Add(-reserve))
	n.flushPeers(flush)
	cancel()
	n.leave(ctx)
}

// leave tells every peer with a PeerActor (alive or suspect; one down,
// unauthorized or left would not hear it) that this node is leaving, at
// once and within ctx. A peer it does not reach finds the node down from
// its health checks, as after a crash.
func (n *Node) leave(ctx context.Context) {
	d := time.Until(deadline(ctx))
	if d <= 0 {
		return
	}
	res, err := n.sys.Root.RequestFuture(n.sup, &actors.GetPeers{}, d).Result()
	if err != nil {
		return
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
}
