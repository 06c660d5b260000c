package actors

import (
	"context"
	"errors"
	"time"

	"countd/wire"
)

// ErrUnauthorized is wrapped by a Transport's error when the remote node
// refused the request for want of a valid cluster signature: this node has
// no key, or one the remote node does not have.
var ErrUnauthorized = errors.New("actors: refused by the peer: no valid cluster signature")

// Transport is how a PeerActor (and the Supervisor's down-list probe)
// reaches a remote node. transport.HTTP is the real implementation; tests
// wrap it to cut, drop, delay, duplicate or reorder traffic.
type Transport interface {
	// Health asks the node at addr whether it is alive, and its replica id.
	Health(ctx context.Context, addr string) (wire.HealthReply, error)
	// Replicate delivers a state push to the node at addr. A nil error means
	// the receiver merged the entries and made them durable.
	Replicate(ctx context.Context, addr string, req *wire.ReplicateRequest) (*wire.ReplicateReply, error)
	// Probe asks the node at via to health-check target on this node's
	// behalf (an indirect probe) and returns target's answer. An error
	// means via or target did not answer.
	Probe(ctx context.Context, via, target string) (wire.HealthReply, error)
}

// RTTObserver, when a Transport implements it (transport.HTTP does, for
// countd_heartbeat_rtt_seconds), is told the round trip of every
// successful direct check of a node: a health check, or the push a
// PeerActor probes an in-sync peer with instead of one.
type RTTObserver interface {
	CheckRTT(time.Duration)
}

// timed runs a direct check of a node through tr and, when it succeeds,
// tells tr's RTTObserver, if any, how long it took.
func timed[T any](tr Transport, check func() (T, error)) (T, error) {
	start := time.Now()
	v, err := check()
	if o, ok := tr.(RTTObserver); ok && err == nil {
		o.CheckRTT(time.Since(start))
	}
	return v, err
}

// health is tr.Health, timed.
func health(ctx context.Context, tr Transport, addr string) (wire.HealthReply, error) {
	return timed(tr, func() (wire.HealthReply, error) { return tr.Health(ctx, addr) })
}
