package wire

import "countd/crdt"

// EntriesReply answers GET /entries/{name}, a node-to-node read: every
// durable entry the node holds of one counter, for a read at a level
// (?wait=quorum|all) on another node to merge.
type EntriesReply struct {
	Node    string       `json:"node"`
	Replica string       `json:"replica"`
	Entries []crdt.Entry `json:"entries"`
}
