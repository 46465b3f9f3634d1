package projection

import (
	"strings"
	"testing"
)

// hashTag is the part of a key Redis Cluster hashes: the text between the
// first '{' and the next '}' when that is not empty, else the whole key.
func hashTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return key
	}
	return key[open+1 : open+1+end]
}

func TestTargetKeysShareOneTag(t *testing.T) {
	t.Parallel()
	r := NewRedis(nil, "ah:")
	targets := []string{
		"", "a", "a}", "{a}", "a}:idx", "}", "{", "{}", "}{", "a:b", "a|b", "%", "%7D", "a%7D",
		"x{a}y", "é}", "a b", "a\x00b", "0f8fad5b-d9cb-469f-a165-70867728950e", "Ab.9_~+/=-",
	}
	seen := map[string]string{}
	for _, target := range targets {
		stem := r.targetKey(target)
		idx, doc := hashTag(stem+":idx"), hashTag(stem+":doc")
		if idx != doc {
			t.Errorf("target %q: idx tag %q, doc tag %q", target, idx, doc)
		}
		if idx == stem+":idx" {
			t.Errorf("target %q: key %q has no hash tag", target, stem+":idx")
		}
		if other, dup := seen[idx]; dup {
			t.Errorf("targets %q and %q share tag %q", target, other, idx)
		}
		seen[idx] = target
	}
	// Valid target ids are readable as they are.
	for _, id := range []string{"0f8fad5b-d9cb-469f-a165-70867728950e", "Ab.9_~+/=-"} {
		if got := tagTarget(id); got != id {
			t.Errorf("tagTarget(%q) = %q, want it unchanged", id, got)
		}
	}
	if got := tagTarget("a}b%"); got != "a%7Db%25" {
		t.Errorf(`tagTarget("a}b%%") = %q, want "a%%7Db%%25"`, got)
	}
}
