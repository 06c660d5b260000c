package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"countd/crdt"
	"countd/wire"
)

// MaxMembers caps the member list of one push.
const MaxMembers = 1024

// DecodeReplicate parses and validates the body of POST /replicate. It
// rejects unknown fields, trailing data, a bad sender address or replica id,
// bad member addresses and bad entries; on error nothing is returned, so a
// bad payload can change no state. Member addresses come back normalised.
func DecodeReplicate(body []byte) (*wire.ReplicateRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req wire.ReplicateRequest
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("%w: replicate payload: %v", errBadRequest, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: replicate payload: trailing data", errBadRequest)
	}
	from, err := wire.ParseAddr(req.From)
	if err != nil {
		return nil, fmt.Errorf("%w: replicate payload: from: %v", errBadRequest, err)
	}
	req.From = from
	if !crdt.ValidReplica(req.Replica) {
		return nil, fmt.Errorf("%w: replicate payload: replica id %q", errBadRequest, req.Replica)
	}
	if len(req.Members) > MaxMembers {
		return nil, fmt.Errorf("%w: replicate payload: over %d members", errBadRequest, MaxMembers)
	}
	for i, m := range req.Members {
		if req.Members[i], err = wire.ParseAddr(m); err != nil {
			return nil, fmt.Errorf("%w: replicate payload: member %d: %v", errBadRequest, i, err)
		}
	}
	if err := crdt.Validate(req.Entries); err != nil {
		return nil, fmt.Errorf("%w: replicate payload: %v", errBadRequest, err)
	}
	return &req, nil
}
