package httpapi

import (
	"strings"

	"countd/crdt"
	"countd/wire"
)

// replicateForm is the body POST /replicate takes, for error messages.
const replicateForm = `{"from":"host:port","replica":"0123456789abcdef","members":["host:port",...],"entries":[{"counter":"name","replica":"0123456789abcdef","p":N,"n":N},...],"to":"0123456789abcdef","at":UNIX_MS,"incarnation":N,"suspects":[{"addr":"host:port","incarnation":N},...]}`

// MaxMembers caps the member list of one push.
const MaxMembers = 1024

// DecodeReplicate parses and validates the body of POST /replicate. It
// rejects unknown fields, trailing data, a bad sender address or replica id,
// bad member addresses and bad entries; on error nothing is returned, so a
// bad payload can change no state. Member addresses come back normalised.
func DecodeReplicate(body []byte) (*wire.ReplicateRequest, error) {
	var req wire.ReplicateRequest
	if err := decodeObject(body, &req, replicateForm); err != nil {
		return nil, badRequest("replicate payload: %v", err)
	}
	from, err := wire.ParseAddr(req.From)
	if err != nil {
		return nil, badRequest("replicate payload: from: %v", addrError(err))
	}
	req.From = from
	if !crdt.ValidReplica(req.Replica) {
		return nil, badRequest("replicate payload: replica id %s is not %d lowercase hex digits", quote(req.Replica), crdt.ReplicaLen)
	}
	if req.To != "" && !crdt.ValidReplica(req.To) {
		return nil, badRequest("replicate payload: to: replica id %s is not %d lowercase hex digits", quote(req.To), crdt.ReplicaLen)
	}
	if (req.To == "") != (req.At == 0) {
		return nil, badRequest("replicate payload: to and at come together, or neither")
	}
	if len(req.Members) > MaxMembers {
		return nil, badRequest("replicate payload: %d members, over the most, %d", len(req.Members), MaxMembers)
	}
	for i, m := range req.Members {
		if req.Members[i], err = wire.ParseAddr(m); err != nil {
			return nil, badRequest("replicate payload: member %d: %v", i, addrError(err))
		}
	}
	if len(req.Suspects) > MaxMembers {
		return nil, badRequest("replicate payload: %d suspects, over the most, %d", len(req.Suspects), MaxMembers)
	}
	for i, sp := range req.Suspects {
		if req.Suspects[i].Addr, err = wire.ParseAddr(sp.Addr); err != nil {
			return nil, badRequest("replicate payload: suspect %d: %v", i, addrError(err))
		}
	}
	if err := crdt.Validate(req.Entries); err != nil {
		// crdt's text, without its package prefix: "entry 3: counter name ..."
		detail := strings.TrimPrefix(err.Error(), crdt.ErrInvalid.Error()+": ")
		return nil, badRequest("replicate payload: %s is not valid (counter names are 1 to %d characters from A-Z, a-z, 0-9, '.', '_' and '-'; replica ids %d lowercase hex digits)",
			detail, crdt.MaxNameLen, crdt.ReplicaLen)
	}
	return &req, nil
}

// leaveForm is the body POST /leave takes, for error messages.
const leaveForm = `{"from":"host:port","replica":"0123456789abcdef"}`

// DecodeLeave parses and validates the body of POST /leave: the sender's
// address and replica id, nothing else. The address comes back normalised.
func DecodeLeave(body []byte) (*wire.LeaveRequest, error) {
	var req wire.LeaveRequest
	if err := decodeObject(body, &req, leaveForm); err != nil {
		return nil, badRequest("leave payload: %v", err)
	}
	from, err := wire.ParseAddr(req.From)
	if err != nil {
		return nil, badRequest("leave payload: from: %v", addrError(err))
	}
	req.From = from
	if !crdt.ValidReplica(req.Replica) {
		return nil, badRequest("leave payload: replica id %s is not %d lowercase hex digits", quote(req.Replica), crdt.ReplicaLen)
	}
	return &req, nil
}
