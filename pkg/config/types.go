package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Secret is a configuration value that must never be printed: passwords, API keys, URLs that
// carry credentials. String and LogValue redact it; Value returns it.
type Secret string

// Value returns the secret itself, for the one place that needs it.
func (s Secret) Value() string { return string(s) }

// String redacts the secret. A URL keeps its scheme, host and path and loses its password.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	if strings.Contains(string(s), "://") {
		return redactURL(string(s))
	}
	return "[REDACTED]"
}

// LogValue keeps secrets out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps secrets out of JSON and YAML dumps.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// redactURL replaces the password of a URL, and any query parameter that looks like a secret.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "[REDACTED]"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		}
	}
	q := u.Query()
	changed := false
	for k := range q {
		lk := strings.ToLower(k)
		if strings.Contains(lk, "password") || strings.Contains(lk, "secret") || strings.Contains(lk, "key") || strings.Contains(lk, "token") {
			q.Set(k, "REDACTED")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// ByteSize is a size in bytes, written in configuration as a number or with a unit:
// "512", "64KiB", "10MiB", "1GiB" (also KB/MB/GB as powers of 1000).
type ByteSize int64

// ParseByteSize reads a size like "10MiB".
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
		{"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s = strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			mult = u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("not a byte size: %q (use e.g. 1048576, 512KiB or 10MiB)", s)
	}
	return ByteSize(n * mult), nil
}

// String writes the size with the largest exact binary unit.
func (b ByteSize) String() string {
	switch {
	case b != 0 && b%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", b>>30)
	case b != 0 && b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", b>>20)
	case b != 0 && b%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", b>>10)
	}
	return strconv.FormatInt(int64(b), 10)
}

// Redacted returns a copy safe to print or log: every secret and credential-bearing URL masked.
func (c Config) Redacted() Config {
	out := c
	out.Elasticsearch.URLs = make([]string, len(c.Elasticsearch.URLs))
	for i, u := range c.Elasticsearch.URLs {
		out.Elasticsearch.URLs[i] = redactURL(u)
	}
	return out
}

// LogValue logs the configuration by key, as a user writes it, with secrets masked.
func (c Config) LogValue() slog.Value { return slog.AnyValue(c.Redacted().Map()) }

// Map returns the configuration as nested maps keyed like the YAML file, with durations and
// sizes written as a user would write them and secrets masked.
func (c Config) Map() map[string]any {
	return toMap(reflect.ValueOf(c.Redacted()))
}

func toMap(v reflect.Value) map[string]any {
	out := map[string]any{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		key := t.Field(i).Tag.Get("mapstructure")
		f := v.Field(i)
		switch x := f.Interface().(type) {
		case time.Duration:
			out[key] = x.String()
		case ByteSize:
			out[key] = x.String()
		case Secret:
			out[key] = x.String()
		default:
			if f.Kind() == reflect.Struct {
				out[key] = toMap(f)
			} else {
				out[key] = x
			}
		}
	}
	return out
}
