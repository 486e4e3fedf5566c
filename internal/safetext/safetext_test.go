package safetext_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/usage-sync/usage-sync/internal/safetext"
)

func TestClean(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"plain", "bad request", "bad request"},
		{"nul", "bad request \x00 here", "bad request here"},
		{"ansi", "\x1b[31mred\x1b[0m alert", "[31mred [0m alert"},
		{"c1 csi", "a\u009b31mb", "a 31mb"},
		{"invalid utf8", "a\xffb", "a\ufffdb"},
		{"newlines", "line1\r\nline2\tx", "line1 line2 x"},
		{"bidi", "abc\u202edef", "abc def"},
		{"trim", "  x  ", "x"},
		{"empty", "", ""},
		{"only controls", "\x00\x01\x1b", ""},
	} {
		if got := safetext.Clean(c.in, 0); got != c.want {
			t.Errorf("%s: Clean(%q) = %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

func TestCleanBoundsLength(t *testing.T) {
	got := safetext.Clean(strings.Repeat("é", 1000), 11)
	if len(got) > 11 || !strings.HasSuffix(got, "…") || !utf8.ValidString(got) {
		t.Fatalf("Clean to 11 bytes = %q (%d bytes)", got, len(got))
	}
	if got := safetext.Clean(strings.Repeat("x", 2000), 0); len(got) > safetext.MaxDefault {
		t.Fatalf("default bound: %d bytes", len(got))
	}
}

func TestID(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		want string
	}{
		{"key_123", true, "key_123"},
		{" 42 ", true, "42"},
		{"", false, ""},
		{"a\x00b", false, ""},
		{"a\nb", false, ""},
		{"a\x1b[2Jb", false, ""},
		{"a\xffb", false, ""},
		{strings.Repeat("k", safetext.MaxIDDefault), true, strings.Repeat("k", safetext.MaxIDDefault)},
		{strings.Repeat("k", safetext.MaxIDDefault+1), false, ""},
		{strings.Repeat("k", 10000), false, ""},
	} {
		got, ok := safetext.ID(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("ID(%.20q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// checkClean asserts the promises of Clean's result.
func checkClean(t *testing.T, in, out string, max int) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("Clean(%q) = %q: invalid UTF-8", in, out)
	}
	if len(out) > max {
		t.Fatalf("Clean(%q, %d) = %q: %d bytes", in, max, out, len(out))
	}
	if out != strings.TrimSpace(out) || strings.Contains(out, "  ") {
		t.Fatalf("Clean(%q) = %q: untrimmed or double space", in, out)
	}
	for _, r := range out {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || (unicode.IsSpace(r) && r != ' ') {
			t.Fatalf("Clean(%q) = %q: keeps %U", in, out, r)
		}
	}
	if again := safetext.Clean(out, max); again != out {
		t.Fatalf("Clean is not idempotent: %q → %q → %q", in, out, again)
	}
}

func FuzzClean(f *testing.F) {
	f.Add("bad request \x00 here", 200)
	f.Add("\x1b[31m\x1b]0;title\x07", 10)
	f.Add("a\xff\xfe\u202e", 4)
	f.Fuzz(func(t *testing.T, in string, max int) {
		max = 4 + (max&0xffff)%1000
		checkClean(t, in, safetext.Clean(in, max), max)
		if id, ok := safetext.ID(in); ok {
			if len(id) > safetext.MaxIDDefault || !utf8.ValidString(id) || strings.ContainsRune(id, 0) {
				t.Fatalf("ID(%q) accepted %q", in, id)
			}
		}
	})
}

func TestIsUUID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    string
		want bool
	}{
		{"3f2b5c9e-0a7d-4e61-9a51-2c1f0f6e8b2d", true},
		{"3F2B5C9E-0A7D-4E61-9A51-2C1F0F6E8B2D", true},
		{"3f2b5c9e0a7d4e619a512c1f0f6e8b2d", false},
		{"3f2b5c9e-0a7d-4e61-9a51-2c1f0f6e8b2", false},
		{"3f2b5c9e-0a7d-4e61-9a51_2c1f0f6e8b2d", false},
		{"3f2b5c9e-0a7d-4e61-9a51-2c1f0f6e8b2g", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := safetext.IsUUID(tt.s); got != tt.want {
			t.Errorf("IsUUID(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}
