// Package actors holds countd's actors and the messages they exchange.
//
// The CounterActor owns the replicated state (a crdt.State) and its durable
// copy: it applies client changes and peer merges, writes them to the store
// in group commits, and tells its subscribers after each durable batch. The
// Supervisor (next to it) owns one PeerActor per remote node; each PeerActor
// pushes the deltas its peer lacks and watches the peer's health.
//
// No actor blocks in Receive: disk and network work runs in a goroutine that
// reports back to the actor as a message. Code outside the actor system talks
// to the CounterActor through Counters, which waits a bounded time.
package actors
