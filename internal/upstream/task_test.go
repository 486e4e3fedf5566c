package upstream

import "testing"

func TestPurpose(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, purpose string }{
		{"zapier", "zapier"},
		{" Zapier ", "zapier"},
		{"n8n", "n8n"},
		{"google sheets", "google sheets"},
		{"google_sheets", "google sheets"},
		{"google-sheets", "google sheets"},
		{"Google Sheets", "google sheets"},
		{"custom", "custom"},
		{"Make.com", "make.com"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := NormalizePurpose(tt.in); got != tt.purpose {
			t.Errorf("NormalizePurpose(%q) = %q, want %q", tt.in, got, tt.purpose)
		}
	}
}
