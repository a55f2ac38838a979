package redisurl

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		raw      string
		want     error  // nil: parses
		addr     string // when it parses
		password string // when it parses
		says     string // in the error
	}{
		{raw: "redis://127.0.0.1:6379", addr: "127.0.0.1:6379"},
		{raw: "redis://alice:secret@host:6380/2", addr: "host:6380", password: "secret"},
		{raw: "rediss://alice:s%40cret@host", addr: "host:6379", password: "s@cret"},
		{raw: "rediss://alice:s@cret@host", addr: "host:6379", password: "s@cret"}, // Go takes the last @
		{raw: "rediss://host:6380?skip_verify=false", addr: "host:6380"},
		{raw: "redis://alice:secret@host:badport", want: ErrBadURL, says: "does not parse"},
		{raw: "redis://alice:secret@host:6379/x", want: ErrBadURL, says: `"redis://alice:xxxxx@host:6379/x": redis: invalid database number`},
		{raw: "redis://alice:sec/ret@host", want: ErrBadURL, says: "does not parse"},
		{raw: "redis://alice:123/456@host", want: ErrBadURL, says: "does not parse"},
		{raw: "redis://alice:123?456@host", want: ErrBadURL, says: "does not parse"},
		{raw: "redis://alice:123#456@host", want: ErrBadURL, says: "does not parse"},
		{raw: "alice:secret@host:6379", want: ErrBadURL, says: "does not parse"},
		{raw: "redis://alice:secret@host?password=secret", want: ErrBadURL, says: `"redis://alice:xxxxx@host": redis: unexpected option: password`},
		{raw: "http://alice:secret@host", want: ErrBadURL, says: "invalid URL scheme: http"},
		{raw: "redis://alice:secret\n@host", want: ErrBadURL, says: "does not parse"},
		{raw: "rediss://alice:secret@host?skip_verify=true", want: ErrSkipVerify, says: `"rediss://alice:xxxxx@host"`},
		{raw: "rediss://host?skip_verify=1", want: ErrSkipVerify},
	} {
		opts, err := Parse(tc.raw)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("Parse(%q): %v", tc.raw, err)
		case tc.want == nil && (opts.Addr != tc.addr || opts.Password != tc.password):
			t.Errorf("Parse(%q): addr %q, password %q; want %q, %q", tc.raw, opts.Addr, opts.Password, tc.addr, tc.password)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("Parse(%q) = %v, want an error wrapping %v", tc.raw, err, tc.want)
		case tc.want != nil && (strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "456") || !strings.Contains(err.Error(), tc.says)):
			t.Errorf("Parse(%q) = %v, want no password and %q", tc.raw, err, tc.says)
		}
	}
}

func TestParseInsecure(t *testing.T) {
	opts, err := ParseInsecure("rediss://host?skip_verify=true")
	if err != nil || !SkipsVerify(opts) {
		t.Fatalf("ParseInsecure: %v, %v", opts, err)
	}
	if opts, err := ParseInsecure("rediss://host"); err != nil || SkipsVerify(opts) {
		t.Fatalf("ParseInsecure without skip_verify: %v, %v", opts, err)
	}
	if _, err := ParseInsecure("redis://alice:secret@host:badport"); !errors.Is(err, ErrBadURL) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("ParseInsecure of a bad URL: %v", err)
	}
}

func TestRedact(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://alice:secret@host:1/0?password=secret#x": `"redis://alice:xxxxx@host:1/0"`,
		"redis://host:1":                    `"redis://host:1"`,
		"redis://alice:secret@host:badport": "(a URL that does not parse, not shown)",
		"redis://alice:123/456@host":        "(a URL that does not parse, not shown)",
	} {
		if got := Redact(raw); got != want {
			t.Errorf("Redact(%q) = %s, want %s", raw, got, want)
		}
	}
}

// FuzzParse checks that a password, however badly the URL around it is
// written, never appears in an error or in Redact: the password is
// "S3CRET" followed by anything, between "redis://alice:" and "@" + rest.
func FuzzParse(f *testing.F) {
	for _, seed := range [][2]string{
		{"", "host:6379"}, {"", "host:badport"}, {"/x", "host"}, {"?x", "host"}, {"#x", "host"},
		{"@x", "host"}, {"%zz", "host"}, {":x", "host/db"}, {" ", "host"}, {"", "host?skip_verify=true"},
	} {
		f.Add(seed[0], seed[1])
	}
	const marker = "S3CRET"
	f.Fuzz(func(t *testing.T, pass, rest string) {
		if strings.Contains(rest, marker) {
			t.Skip("the marker outside the password")
		}
		for _, scheme := range []string{"redis", "rediss", "unix"} {
			raw := scheme + "://alice:" + marker + pass + "@" + rest
			if _, err := Parse(raw); err != nil && strings.Contains(err.Error(), marker) {
				t.Fatalf("Parse(%q) = %v", raw, err)
			}
			if r := Redact(raw); strings.Contains(r, marker) {
				t.Fatalf("Redact(%q) = %s", raw, r)
			}
		}
	})
}
