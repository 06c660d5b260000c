package actors

import (
	"context"
	"errors"

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
