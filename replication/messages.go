package replication

import "time"

// Event is something that happened to a Peer, given to Step.
type Event interface{ event() }

// Events.
type (
	// Start: the shell is running. The first push brings the peer up to
	// date with the full state.
	Start struct{}

	// Changed: this node's durable state reached Version. Origin is the
	// address of the peer whose pushes caused every change since the last
	// notice, or "" if any came from a client (or from several peers).
	Changed struct {
		Version uint64
		Origin  string
	}

	// MembersChanged: the members this node sees alive changed. Every push
	// carries them, so the peer needs one.
	MembersChanged struct{}

	// AntiEntropy: time for a full push, which repairs whatever a lost or
	// mishandled delta might have left behind; none while the peer's
	// process acknowledged a full push of this node's latest version (it
	// would resend exactly that).
	AntiEntropy struct{}

	// ProbeDue: the Supervisor's turn to probe the peer has come (SWIM's
	// protocol period). The Peer answers with a Check, or with a Push
	// that is the probe (Push.Probe).
	ProbeDue struct{}

	// Flush: someone waits for the peer to be up to date (at shutdown).
	// The Peer pushes at once and answers with AnswerFlush.
	Flush struct{}

	// PushDue: the timer that SchedulePush with the same Seq armed fired.
	PushDue struct{ Seq uint64 }

	// Pushed: the push that Push asked for ended. Version is the version
	// the cut reached (0 if the cut itself failed), More says the cut was
	// cut short, Replica is the replica id of the process that answered.
	Pushed struct {
		Version uint64
		More    bool
		Replica string
		Err     error // nil: the peer made the entries durable
		// Unauthorized says the peer refused this node's cluster key
		// (Err is set).
		Unauthorized bool
	}

	// Health: a health check ended. Replica is the peer's replica id; Self
	// says the address answered as this very node.
	Health struct {
		Replica string
		Self    bool
		Err     error // nil: the peer answered
		// Unauthorized says the peer refused this node's cluster key
		// (Err is set).
		Unauthorized bool
	}
)

func (Start) event()          {}
func (Changed) event()        {}
func (MembersChanged) event() {}
func (AntiEntropy) event()    {}
func (Flush) event()          {}
func (ProbeDue) event()       {}
func (PushDue) event()        {}
func (Pushed) event()         {}
func (Health) event()         {}

// Action is a decision of the Peer that its shell carries out, in the order
// Step returns them.
type Action interface{ action() }

// Actions.
type (
	// Push: cut the entries changed after Since (0: the full state), push
	// them, and report the end with a Pushed event. There is never more
	// than one push in flight. To is the peer's process (replica id) that
	// holds everything up to Since, so that with this push it holds all
	// this node has: "" when that is not known. A complete push (not cut
	// short by a size limit) names To and the time it was cut, so the
	// receiving process learns it has everything this node held then
	// (the sync clock: docs/design.md, section 6).
	//
	// Probe says the push is also the probe ProbeDue asked for: its
	// answer shows the peer alive, and if it fails the shell probes the
	// peer indirectly as after a failed Check. The shell reports a Pushed
	// and then a Health event for it.
	Push struct {
		Since uint64
		To    string
		Probe bool
	}

	// Check: probe the peer with a health check (directly, then
	// indirectly) and report a Health event.
	Check struct{}

	// SchedulePush: deliver PushDue{Seq} after a delay the shell picks at
	// random between Min and Max. It replaces any push timer armed
	// before; the Peer ignores a PushDue of an earlier Seq, so the shell
	// need not cancel one that is already on its way.
	SchedulePush struct {
		Seq      uint64
		Min, Max time.Duration
	}

	// Report tells the parent how the peer is doing; one follows every
	// health check.
	Report struct {
		Answered bool   // the health check succeeded
		Replica  string // the peer's replica id, as last learnt
		// Held is this node's version the peer is known to hold (0 until
		// a full push reached its current process).
		Held uint64
		// Latest is this node's latest durable version the Peer knows of.
		Latest uint64
	}

	// ReportUnhealthy tells the parent that the peer failed
	// Config.FailuresBeforeDown health checks in a row. It comes once.
	ReportUnhealthy struct{ Err error }

	// ReportUnauthorized tells the parent that the peer refused this
	// node's cluster key, on a health check or a push. It comes once per
	// run of refusals; until a health check succeeds again the Peer
	// pushes nothing (the peer could not accept it).
	ReportUnauthorized struct{ Err error }

	// ReportSelf tells the parent that the peer's address answers as this
	// very node.
	ReportSelf struct{}

	// AnswerFlush answers everyone waiting since a Flush: the peer is up
	// to date (Err nil), or a push failed.
	AnswerFlush struct{ Err error }
)

func (Push) action()               {}
func (Check) action()              {}
func (SchedulePush) action()       {}
func (Report) action()             {}
func (ReportUnhealthy) action()    {}
func (ReportUnauthorized) action() {}
func (ReportSelf) action()         {}
func (AnswerFlush) action()        {}

// Behind is how many of this node's versions the peer is not known to hold.
func (r Report) Behind() uint64 { return r.Latest - min(r.Latest, r.Held) }
