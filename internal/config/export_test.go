package config

import "sort"

// Names lists every variable Config reads, sorted.
func Names() []string {
	var c Config
	var out []string
	for _, f := range fieldsOf(&c) {
		out = append(out, f.name)
	}
	sort.Strings(out)
	return out
}
