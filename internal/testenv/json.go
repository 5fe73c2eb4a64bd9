package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"
)

// SameJSON reports whether two JSON texts hold the same value: objects compare by key (jsonb
// reorders keys), arrays by position, numbers by exact decimal value (jsonb writes 1e-3 as
// 0.001 and keeps every digit of 123456789012345678901234567890), strings and literals exactly.
// The reason names the first difference.
func SameJSON(a, b []byte) (same bool, reason string, err error) {
	va, err := decodeJSON(a)
	if err != nil {
		return false, "", err
	}
	vb, err := decodeJSON(b)
	if err != nil {
		return false, "", err
	}
	if r := diffJSON("$", va, vb); r != "" {
		return false, r, nil
	}
	return true, "", nil
}

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode %q: %w", truncate(b), err)
	}
	return v, nil
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

func diffJSON(path string, a, b any) string {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: object vs %T", path, b)
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			yv, ok := y[k]
			if !ok {
				return fmt.Sprintf("%s: key %q missing", path, k)
			}
			if r := diffJSON(path+"."+k, x[k], yv); r != "" {
				return r
			}
		}
		if len(x) != len(y) {
			return fmt.Sprintf("%s: %d keys vs %d", path, len(x), len(y))
		}
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return fmt.Sprintf("%s: array of %d vs %v", path, len(x), b)
		}
		for i := range x {
			if r := diffJSON(fmt.Sprintf("%s[%d]", path, i), x[i], y[i]); r != "" {
				return r
			}
		}
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return fmt.Sprintf("%s: number %s vs %v", path, x, b)
		}
		ra, ok1 := new(big.Rat).SetString(strings.TrimSpace(x.String()))
		rb, ok2 := new(big.Rat).SetString(strings.TrimSpace(y.String()))
		if !ok1 || !ok2 || ra.Cmp(rb) != 0 {
			return fmt.Sprintf("%s: number %s vs %s", path, x, y)
		}
	default:
		if a != b {
			return fmt.Sprintf("%s: %#v vs %#v", path, a, b)
		}
	}
	return ""
}
