package actors

import (
	"context"

	"countd/crdt"
)

// Transport is how a PeerActor (and the Supervisor's down-list probe)
// reaches a remote node. httpapi.Client is the real implementation; tests
// wrap it to cut, drop, delay, duplicate or reorder traffic.
type Transport interface {
	// Health asks the node at addr whether it is alive, and its replica id.
	Health(ctx context.Context, addr string) (HealthReply, error)
	// Replicate delivers a state push to the node at addr. A nil error means
	// the receiver merged the entries and made them durable.
	Replicate(ctx context.Context, addr string, req *ReplicateRequest) (*ReplicateReply, error)
}

// HealthReply is what GET /health answers.
type HealthReply struct {
	Status  string `json:"status"`
	Node    string `json:"node"`
	Replica string `json:"replica"`
}

// ReplicateRequest is the body of POST /replicate: the sender's name and
// replica id, the peers it sees alive (gossip), and the entries the receiver
// lacks.
type ReplicateRequest struct {
	From    string       `json:"from"`
	Replica string       `json:"replica"`
	Members []string     `json:"members"`
	Entries []crdt.Entry `json:"entries"`
}

// ReplicateReply answers a ReplicateRequest. Replica lets the sender notice
// that the receiver restarted (and so may lack what it acknowledged before).
type ReplicateReply struct {
	Node    string `json:"node"`
	Replica string `json:"replica"`
	Changed int    `json:"changed"`
}
