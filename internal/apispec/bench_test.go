package apispec

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func BenchmarkCheckChange(b *testing.B) {
	spec, err := Load()
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/counters/c/increment?by=2", nil)
	h := http.Header{"Content-Type": {"application/json"}}
	body := []byte(`{"counter":"c","value":2,"node":"127.0.0.1:8080"}` + "\n")
	for b.Loop() {
		if err := spec.Check(Exchange{Request: req, Status: 200, Header: h, Body: body}); err != nil {
			b.Fatal(err)
		}
	}
}
