package apispec

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCheckKeywords checks that the validator Check runs (kin-openapi's
// own, see Parse) enforces the keywords the contract relies on.
func TestCheckKeywords(t *testing.T) {
	spec, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	json := http.Header{"Content-Type": {"application/json"}}
	status := `{"node":"n:1","replica":"0123456789abcdef","uptime_seconds":0,"peers":[],"counters":{},` +
		`"history":{"step_seconds":1,"changes_per_second":[null,1.5],"behind":{"p:1":[null,3]}}}`
	tests := []struct {
		name    string
		method  string
		target  string
		status  int
		header  http.Header
		body    string
		invalid string // what the error must name; "" if the exchange is fine
	}{
		{"a value", "POST", "/increment", 200, json, `{"counter":"default","value":-3,"node":"n:1"}`, ""},
		{"a value without node", "POST", "/increment", 200, json, `{"counter":"default","value":1}`, "node"},
		{"a value with a field more", "POST", "/increment", 200, json, `{"counter":"default","value":1,"node":"n:1","x":1}`, "x"},
		{"a value past int64", "GET", "/counter", 200, json, `{"counter":"default","value":99999999999999999999,"node":"n:1"}`, "value"},
		{"a bad counter name", "GET", "/counters/c", 200, json, `{"counter":"a b","value":1,"node":"n:1"}`, "counter"},
		{"a replay", "POST", "/increment", 200, http.Header{"Content-Type": {"application/json"}, "Idempotent-Replayed": {"true"}},
			`{"counter":"default","value":1,"node":"n:1"}`, ""},
		{"a replay header not true", "POST", "/increment", 200, http.Header{"Content-Type": {"application/json"}, "Idempotent-Replayed": {"yes"}},
			`{"counter":"default","value":1,"node":"n:1"}`, "Idempotent-Replayed"},
		{"history with nulls", "GET", "/status?history=1", 200, json, status, ""},
		{"history with a string", "GET", "/status?history=1", 200, json, strings.Replace(status, "1.5", `"x"`, 1), "changes_per_second"},
		{"a peer state not listed", "GET", "/peers", 200, json, `{"peers":[{"addr":"a:1","state":"gone","behind":0}],"node":"n:1"}`, "state"},
		{"an error", "GET", "/counters", 503, json, `{"error":"busy"}`, ""},
		{"an error without a message", "GET", "/counters", 503, json, `{"error":""}`, "error"},
		{"an error as text", "GET", "/counters", 503, http.Header{"Content-Type": {"text/plain"}}, "busy", "text/plain"},
		{"a status not documented", "GET", "/counters", 418, json, `{"error":"tea"}`, "status"},
		{"a wait level not listed", "POST", "/increment?wait=most", 200, json, `{"counter":"default","value":1,"node":"n:1"}`, "wait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, nil)
			err := spec.Check(Exchange{Request: req, Status: tt.status, Header: tt.header, Body: []byte(tt.body)})
			switch {
			case tt.invalid == "" && err != nil:
				t.Errorf("Check: %v, want nil", err)
			case tt.invalid != "" && err == nil:
				t.Errorf("Check: nil, want an error about %s", tt.invalid)
			case tt.invalid != "" && !strings.Contains(err.Error(), tt.invalid):
				t.Errorf("Check: %v, want an error about %s", err, tt.invalid)
			}
		})
	}
}
