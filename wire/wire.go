// Package wire holds what nodes say to each other: the bodies of GET /health,
// POST /replicate, POST /probe and POST /leave, the largest body a node accepts, and how a peer
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
	// To and At, when set, say that with these entries the process To (a
	// replica id) holds everything the sender held at its clock At (unix
	// milliseconds): the sender knew what To held before, and the push was
	// not cut short. The sync clock (docs/design.md, section 6).
	To string `json:"to,omitempty"`
	At uint64 `json:"at,omitempty"`
	// Incarnation is the sender's incarnation: a number it raises to
	// refute a suspicion of itself (docs/design.md, section 7, "Failure
	// detection"). 0 is left out.
	Incarnation uint64 `json:"incarnation,omitempty"`
	// Suspects are the members the sender suspects, each at the
	// incarnation it knew: gossip that a receiver takes unless it has
	// heard of a later incarnation, and that the suspect refutes.
	Suspects []Suspect `json:"suspects,omitempty"`
}

// Suspect names a member suspected of having failed, at its incarnation
// as the suspecting node knew it.
type Suspect struct {
	Addr        string `json:"addr"`
	Incarnation uint64 `json:"incarnation"`
}

// ProbeRequest is the body of POST /probe: the receiver health-checks
// Target on the sender's behalf (an indirect probe) and answers with the
// target's HealthReply, or an error if the target did not answer.
type ProbeRequest struct {
	Target string `json:"target"`
}

// ReplicateReply answers a ReplicateRequest. Replica lets the sender notice
// that the receiver restarted (and so may lack what it acknowledged before).
type ReplicateReply struct {
	Node    string `json:"node"`
	Replica string `json:"replica"`
	Changed int    `json:"changed"`
}

// LeaveRequest is the body of POST /leave: the sender, as the process
// with this replica id, is shutting down. Its peers mark it left at once;
// a push or health-check answer from another process of it (a restart)
// makes it alive again.
type LeaveRequest struct {
	From    string `json:"from"`
	Replica string `json:"replica"`
}

// LeaveReply answers a LeaveRequest.
type LeaveReply struct {
	Node string `json:"node"`
}

// MaxBody is the largest request body a node accepts, and the largest reply
// the transport reads.
const MaxBody = 1 << 20
