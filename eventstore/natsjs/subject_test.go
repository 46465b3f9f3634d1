package natsjs

import (
	"regexp"
	"strings"
	"testing"
)

func TestSubjectToken(t *testing.T) {
	t.Parallel()
	s := &Store{cfg: Config{SubjectPrefix: "ah"}}
	token := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	for _, name := range []string{
		"a", "a.b", "*", ">", "a b", "/x/y", "ünï 日本 🙂", "\x00\n\t", "..", strings.Repeat("é", 64), strings.Repeat(">", 128),
	} {
		subj := s.evSubject(name)
		tok := strings.TrimPrefix(subj, "ah.ev.")
		if !token.MatchString(tok) {
			t.Errorf("%q: token %q is not a plain subject token", name, tok)
		}
		back, err := s.streamOf(subj)
		if err != nil || back != name {
			t.Errorf("%q: decoded %q, %v", name, back, err)
		}
	}
}
