package ingest

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/council/activityhistory/activity"
)

// builtinMapping is the pilot's table; see the file for the format.
//
//go:embed mapping.txt
var builtinMapping string

// BuiltinMappingName names the built-in mapping in errors.
const BuiltinMappingName = "built-in mapping"

// Rule is what one event type becomes.
type Rule struct {
	// Ignore: acknowledge and record nothing.
	Ignore     bool
	Type       activity.Type
	TargetType activity.TargetType
}

// Mapping turns event types into activity types and target types. It is
// data: the built-in table, extended and overridden by an operator's file.
type Mapping struct {
	rules map[string]Rule
}

// Lookup returns the rule of eventType; false when it is not mapped.
func (m *Mapping) Lookup(eventType string) (Rule, bool) {
	r, ok := m.rules[eventType]
	return r, ok
}

// EventTypes lists the mapped event types, sorted.
func (m *Mapping) EventTypes() []string {
	out := make([]string, 0, len(m.rules))
	for t := range m.rules {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// LoadMapping returns the built-in mapping with the file at path (none when
// empty) added over it. targetTypes are the target types activities may
// have; a rule naming another one is refused here, at start, not when an
// event arrives.
func LoadMapping(path string, targetTypes []activity.TargetType) (*Mapping, error) {
	m := &Mapping{rules: map[string]Rule{}}
	if err := m.parse(BuiltinMappingName, strings.NewReader(builtinMapping), targetTypes); err != nil {
		return nil, err
	}
	if path == "" {
		return m, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mapping file: %w", err)
	}
	defer f.Close()
	if err := m.parse(path, f, targetTypes); err != nil {
		return nil, err
	}
	return m, nil
}

var eventTypeName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.:-]{0,127}$`)

// parse reads one mapping file into m; an entry overrides an earlier
// file's entry for the same event type, but may not repeat one of its own.
func (m *Mapping) parse(name string, r io.Reader, targetTypes []activity.TargetType) error {
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		eventType, rule, err := parseRule(line, targetTypes)
		if err == nil {
			if first, dup := seen[eventType]; dup {
				err = fmt.Errorf("%s is already mapped on line %d", eventType, first)
			}
		}
		if err != nil {
			return fmt.Errorf("%s line %d: %w", name, n, err)
		}
		seen[eventType] = n
		m.rules[eventType] = rule
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func parseRule(line string, targetTypes []activity.TargetType) (string, Rule, error) {
	f := strings.Fields(line)
	if !eventTypeName.MatchString(f[0]) {
		return "", Rule{}, fmt.Errorf("event type %q: want a letter, then letters, digits, _ . : - (at most 128)", f[0])
	}
	switch {
	case len(f) == 2 && f[1] == "ignore":
		return f[0], Rule{Ignore: true}, nil
	case len(f) > 2 && f[1] == "ignore":
		return "", Rule{}, errors.New(`"ignore" takes no target type`)
	case len(f) != 3:
		return "", Rule{}, errors.New(`want "<eventType> <type> <targetType>" or "<eventType> ignore"`)
	}
	t := activity.Type(f[1])
	if !slices.Contains(activity.Types, t) {
		return "", Rule{}, fmt.Errorf("activity type %q: want one of %s or ignore", f[1], join(activity.Types))
	}
	tt := activity.TargetType(f[2])
	if !slices.Contains(targetTypes, tt) {
		return "", Rule{}, fmt.Errorf("target type %q: want one of %s (more with ACTIVITY_EXTRA_TARGET_TYPES)", f[2], join(targetTypes))
	}
	return f[0], Rule{Type: t, TargetType: tt}, nil
}

func join[T ~string](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = string(x)
	}
	return strings.Join(s, ", ")
}
