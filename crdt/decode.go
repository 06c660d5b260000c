package crdt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// DecodeDelta parses a JSON array of entries, rejecting unknown fields,
// trailing data, and any entry with an invalid counter name or replica id.
// On error it returns no entries, so a caller cannot apply part of a bad delta.
func DecodeDelta(data []byte) ([]Entry, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var entries []Entry
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after delta", ErrInvalid)
	}
	if err := Validate(entries); err != nil {
		return nil, err
	}
	return entries, nil
}
