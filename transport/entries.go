package transport

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"countd/actors"
	"countd/crdt"
	"countd/wire"
)

var _ actors.EntriesReader = (*HTTP)(nil)

// Entries implements actors.EntriesReader with GET /entries/{name}: the
// durable entries the node at addr holds of counter, for a read at a
// level. Entries that are not valid, or not of counter, are an error.
func (c *HTTP) Entries(ctx context.Context, addr, counter string) (*wire.EntriesReply, error) {
	var reply wire.EntriesReply
	if err := c.do(ctx, http.MethodGet, addr, "/entries/"+url.PathEscape(counter), nil, &reply); err != nil {
		return nil, err
	}
	if err := crdt.Validate(reply.Entries); err != nil {
		return nil, fmt.Errorf("GET %s/entries/%s: %w", addr, counter, err)
	}
	for _, e := range reply.Entries {
		if e.Counter != counter {
			return nil, fmt.Errorf("GET %s/entries/%s: %w: an entry of counter %q", addr, counter, crdt.ErrInvalid, e.Counter)
		}
	}
	return &reply, nil
}
