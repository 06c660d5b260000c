package respapi

import "testing"

// TestGlobMatch: KEYS and SCAN MATCH take Redis's glob patterns, classes
// and escapes included.
func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		miss    []string
	}{
		{"*", []string{"a", "rate:user:42"}, nil},
		{"rate:*", []string{"rate:", "rate:user:42"}, []string{"rat", "xrate:1"}},
		{"a?", []string{"ab", "a:"}, []string{"a", "abc"}},
		{"a[bc]", []string{"ab", "ac"}, []string{"ad", "abc"}},
		{"a[^b]", []string{"ac", "ad"}, []string{"ab"}},
		{"a[b-d]x", []string{"abx", "adx"}, []string{"aex"}},
		{`a\*`, []string{"a*"}, []string{"ab"}},
		{"a[", nil, []string{"a", "a["}}, // malformed: matches nothing
	}
	for _, tc := range tests {
		for _, n := range tc.match {
			if !globMatch(n, tc.pattern) {
				t.Errorf("%q does not match %q", n, tc.pattern)
			}
		}
		for _, n := range tc.miss {
			if globMatch(n, tc.pattern) {
				t.Errorf("%q matches %q", n, tc.pattern)
			}
		}
	}
}
