package activity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is how deeply a request body may nest objects and arrays,
// counting the body's own object or array: many clients' JSON parsers fail
// on deeper documents.
const MaxDepth = 32

// maxScanProblems bounds the problems one body reports.
const maxScanProblems = 20

// scanner walks a request body once, before it is decoded, for what
// encoding/json lets through: invalid UTF-8 and unpaired surrogate escapes
// (decoded strings get U+FFFD, raw data keeps the bytes, and pages stop
// being valid JSON), repeated keys (the last would silently win), nesting
// deeper than MaxDepth, and fields the API does not know. Syntax errors are
// left to the decoder, which words them.
type scanner struct {
	b     []byte
	i     int
	path  []seg
	e     ValidationError
	n     int  // problems reported
	stop  bool // syntax error, nesting too deep or too many problems
	depth int
	keys  [][]byte // keys of the open objects, innermost last
}

// seg is one step of a path: an object key, or an array index.
type seg struct {
	key   []byte
	idx   int
	index bool
}

// scanBody reports the problems of body by JSON path ("[2].newData.a").
func scanBody(body []byte) error {
	s := &scanner{b: body, keys: make([][]byte, 0, 32), path: make([]seg, 0, 8)}
	s.value()
	return s.e.orNil()
}

func (s *scanner) problem(path []seg, msg string) {
	s.n++
	if s.n > maxScanProblems {
		s.stop = true
		return
	}
	s.e.add(pathString(path), msg)
}

func pathString(path []seg) string {
	if len(path) == 0 {
		return "body"
	}
	var sb strings.Builder
	for i, p := range path {
		switch {
		case p.index:
			sb.WriteString("[" + strconv.Itoa(p.idx) + "]")
		default:
			if i > 0 {
				sb.WriteByte('.')
			}
			sb.WriteString(strings.ToValidUTF8(string(p.key), "\uFFFD"))
		}
	}
	return sb.String()
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) value() {
	s.ws()
	if s.i >= len(s.b) {
		s.stop = true
		return
	}
	switch c := s.b[s.i]; {
	case c == '{':
		s.object()
	case c == '[':
		s.array()
	case c == '"':
		s.str(false)
	default:
		// Numbers and literals: the decoder checks their syntax.
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			s.i++
		}
	}
}

// open counts one more level of nesting; false when that is too deep.
func (s *scanner) open() bool {
	s.depth++
	if s.depth > MaxDepth {
		// The item's field says where; the rest of the path is noise.
		s.problem(s.path[:min(len(s.path), s.itemDepth()+1)], fmt.Sprintf("nests objects and arrays more than %d levels deep", MaxDepth))
		s.stop = true
		return false
	}
	return true
}

// itemDepth is the length of the path to the activity being scanned: 0 for
// a single object, 1 inside a top-level array.
func (s *scanner) itemDepth() int {
	if len(s.path) > 0 && s.path[0].index {
		return 1
	}
	return 0
}

func (s *scanner) array() {
	if !s.open() {
		return
	}
	defer func() { s.depth-- }()
	s.i++ // [
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return
	}
	s.path = append(s.path, seg{})
	n := len(s.path) - 1
	for idx := 0; !s.stop; idx++ {
		s.path[n] = seg{idx: idx, index: true}
		s.value()
		if !s.more(']') {
			break
		}
	}
	s.path = s.path[:n]
}

// more reads the separator after a member: true after a comma, false
// after close or a syntax error.
func (s *scanner) more(close byte) bool {
	s.ws()
	switch {
	case s.stop || s.i >= len(s.b):
		s.stop = true
		return false
	case s.b[s.i] == ',':
		s.i++
		return true
	case s.b[s.i] == close:
		s.i++
		return false
	default:
		s.stop = true
		return false
	}
}

func (s *scanner) object() {
	if !s.open() {
		return
	}
	defer func() { s.depth-- }()
	s.i++ // {
	first := len(s.keys)
	// Which known-field set applies: the activity itself, or its author.
	var known map[string]bool
	switch d := s.itemDepth(); {
	case len(s.path) == d:
		known = knownFields
	case len(s.path) == d+1 && !s.path[d].index && string(s.path[d].key) == "authorDetails":
		known = knownAuthorFields
	}
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return
	}
	var seen map[string]struct{}
	for !s.stop {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			s.stop = true
			break
		}
		key := s.str(true)
		if s.stop {
			break
		}
		mine := s.keys[first:]
		dup := false
		if seen != nil {
			_, dup = seen[string(key)]
		} else {
			for _, k := range mine {
				if bytes.Equal(k, key) {
					dup = true
					break
				}
			}
		}
		s.path = append(s.path, seg{key: key})
		switch {
		case dup:
			s.problem(s.path, "is given more than once")
		case known != nil && !known[string(key)]:
			s.problem(s.path, "is not a known field")
		}
		s.keys = append(s.keys, key)
		if seen == nil && len(mine) >= 16 {
			// Many keys: a map keeps the check linear.
			seen = make(map[string]struct{}, 2*len(mine))
			for _, k := range s.keys[first:] {
				seen[string(k)] = struct{}{}
			}
		} else if seen != nil {
			seen[string(key)] = struct{}{}
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			s.stop = true
		} else {
			s.i++
			s.value()
		}
		s.path = s.path[:len(s.path)-1]
		if !s.more('}') {
			break
		}
	}
	s.keys = s.keys[:first]
}

// str scans a string at s.i, checking its UTF-8 and escapes. For a key it
// returns the key's decoded bytes (the raw bytes when nothing is escaped).
func (s *scanner) str(isKey bool) []byte {
	s.i++ // opening quote
	start := s.i
	escaped := false
	bad := ""
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw := s.b[start:s.i]
			s.i++
			if isKey {
				// The key is part of the path: report on it, not its value.
				key := raw
				if escaped {
					key = unescape(raw)
				}
				if bad != "" {
					s.problem(append(s.path, seg{key: key}), bad+" in its name")
				}
				return key
			}
			if bad != "" {
				s.problem(s.path, bad)
			}
			return nil
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				s.stop = true
				return nil
			}
			if s.b[s.i+1] == 'u' {
				r, n := s.uEscape(s.i)
				if r == utf8.RuneError && bad == "" {
					bad = "holds an unpaired UTF-16 surrogate escape"
				}
				s.i += n
				continue
			}
			s.i += 2
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, n := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && n <= 1 && bad == "" {
				bad = "is not valid UTF-8"
			}
			s.i += n
		}
	}
	s.stop = true
	return nil
}

// uEscape reads \uXXXX (and the low half of a surrogate pair) at i and
// returns the rune, RuneError for an unpaired surrogate, and its length.
func (s *scanner) uEscape(i int) (rune, int) {
	r1, ok := hex4(s.b, i+2)
	if !ok {
		return 0, 2 // the decoder reports the syntax
	}
	if !utf16.IsSurrogate(r1) {
		return r1, 6
	}
	if i+12 <= len(s.b) && s.b[i+6] == '\\' && s.b[i+7] == 'u' {
		if r2, ok := hex4(s.b, i+8); ok {
			if r := utf16.DecodeRune(r1, r2); r != utf8.RuneError {
				return r, 12
			}
		}
	}
	return utf8.RuneError, 6
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[i:i+4]), 16, 32)
	return rune(v), err == nil
}

// unescape decodes an escaped key as the decoder would; a key it would
// refuse stays raw (the decoder reports it).
func unescape(raw []byte) []byte {
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	var s string
	if json.Unmarshal(q, &s) != nil {
		return raw
	}
	return []byte(s)
}
