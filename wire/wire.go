// Package wire holds what nodes say to each other: the bodies of GET /health
// and POST /replicate, the largest body a node accepts, and how a peer
// address is written. Both the inbound server (httpapi) and the outgoing
// peer transport (transport) use it, so neither depends on the other.
package wire

import "countd/crdt"

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

// MaxBody is the largest request body a node accepts, and the largest reply
// the transport reads.
const MaxBody = 1 << 20
