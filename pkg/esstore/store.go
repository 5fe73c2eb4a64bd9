// Package esstore is Spillway's Elasticsearch storage: the client, the index template and the
// daily event indices, and the document format. It is the only package that imports
// go-elasticsearch; the role packages consume it through interfaces they declare.
package esstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/resilience"
)

// clientBackoff spaces the client's retries of a whole request (502, 503, 504): 50 ms doubling
// to 3.2 s, with jitter.
var clientBackoff = resilience.Backoff{Base: 50 * time.Millisecond, Max: 3200 * time.Millisecond, Jitter: true}

// Store is a handle on the event indices of one cluster. It is safe for concurrent use.
type Store struct {
	es     *elasticsearch.Client
	cfg    config.Elasticsearch
	logger *slog.Logger
}

// New connects to the cluster described by cfg. It does not contact the cluster.
func New(cfg config.Elasticsearch, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.RequestTimeout,
		ExpectContinueTimeout: time.Second,
		// Non-nil: the client sets RootCAs on it for elasticsearch.ca_cert (and panics on nil).
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12},
	}
	esCfg := elasticsearch.Config{
		Addresses:     cfg.URLs,
		Username:      cfg.Username,
		Password:      cfg.Password.Value(),
		APIKey:        cfg.APIKey.Value(),
		RetryOnStatus: []int{502, 503, 504},
		MaxRetries:    cfg.MaxRetries,
		DisableRetry:  cfg.MaxRetries == 0,
		// The client counts attempts from 1.
		RetryBackoff: func(attempt int) time.Duration { return clientBackoff.Delay(attempt - 1) },
		Transport:    tr,
	}
	if cfg.CACert != "" {
		pem, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return nil, fmt.Errorf("elasticsearch.ca_cert: %w", err)
		}
		esCfg.CACert = pem
	}
	es, err := elasticsearch.NewClient(esCfg)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	return &Store{es: es, cfg: cfg, logger: logger}, nil
}

// Prefix is the configured index prefix.
func (s *Store) Prefix() string { return s.cfg.IndexPrefix }

// Alias is the read alias that every event index joins at creation.
func (s *Store) Alias() string { return s.cfg.IndexPrefix }

// Pattern matches every event index.
func (s *Store) Pattern() string { return s.cfg.IndexPrefix + "-*" }

// IndexFor names the index holding events whose @timestamp falls on t's UTC day. Daily indices
// make retention a cheap index deletion instead of a delete-by-query.
func (s *Store) IndexFor(t time.Time) string {
	return s.cfg.IndexPrefix + "-" + t.UTC().Format("2006.01.02")
}

// DayOf parses the day out of an event index name; ok is false for other names.
func (s *Store) DayOf(index string) (day time.Time, ok bool) {
	rest, found := strings.CutPrefix(index, s.cfg.IndexPrefix+"-")
	if !found {
		return time.Time{}, false
	}
	d, err := time.Parse("2006.01.02", rest)
	return d, err == nil
}

// Ping returns nil when the cluster answers and is at least yellow.
func (s *Store) Ping(ctx context.Context) error {
	res, err := s.es.Cluster.Health(s.es.Cluster.Health.WithContext(ctx))
	var out struct {
		Status string `json:"status"`
	}
	if err := decode(res, err, "cluster health", &out); err != nil {
		return err
	}
	if out.Status == "red" {
		return fmt.Errorf("cluster health is red: %w", event.ErrUnavailable)
	}
	return nil
}

// Version returns the version of the node that answers.
func (s *Store) Version(ctx context.Context) (string, error) {
	// GET / lives in a module the test distribution lacks; the nodes info API has the version.
	res, err := s.es.Nodes.Info(s.es.Nodes.Info.WithNodeID("_local"), s.es.Nodes.Info.WithFilterPath("nodes.*.version"),
		s.es.Nodes.Info.WithContext(ctx))
	var out struct {
		Nodes map[string]struct {
			Version string `json:"version"`
		} `json:"nodes"`
	}
	if err := decode(res, err, "nodes info", &out); err != nil {
		return "", err
	}
	for _, n := range out.Nodes {
		return n.Version, nil
	}
	return "", errors.New("nodes info: no node")
}

// Refresh makes everything indexed so far in the event indices visible to search.
func (s *Store) Refresh(ctx context.Context) error {
	res, err := s.es.Indices.Refresh(s.es.Indices.Refresh.WithIndex(s.Pattern()),
		s.es.Indices.Refresh.WithAllowNoIndices(true), s.es.Indices.Refresh.WithContext(ctx))
	return check(res, err, "refresh")
}

// Get returns the event with the id, or event.ErrNotFound. An id may exist on several UTC days
// (each daily index enforces its own ids: the identity is (id, day)): with a zero day Get returns
// the newest (latest @timestamp); otherwise the one of day's UTC day.
func (s *Store) Get(ctx context.Context, id string, day time.Time) (event.Event, error) {
	filter := []any{map[string]any{"ids": map[string]any{"values": []string{id}}}}
	if !day.IsZero() {
		d := day.UTC().Truncate(24 * time.Hour)
		if !event.Storable(d) && !event.Storable(d.Add(24*time.Hour-time.Nanosecond)) {
			// Outside date_nanos the range filter would fail the search: no event is there.
			return event.Event{}, fmt.Errorf("event %q: %w", id, event.ErrNotFound)
		}
		filter = append(filter, rangeFilter(event.Range{From: d, To: d.Add(24 * time.Hour)}))
	}
	q := map[string]any{
		"size":             1,
		"track_total_hits": false,
		"query":            map[string]any{"bool": map[string]any{"filter": filter}},
		"sort":             []any{map[string]any{"@timestamp": "desc"}},
	}
	var out searchResponse
	if err := s.search(ctx, s.Alias(), q, &out); err != nil {
		return event.Event{}, err
	}
	if len(out.Hits.Hits) == 0 {
		return event.Event{}, fmt.Errorf("event %q: %w", id, event.ErrNotFound)
	}
	return out.Hits.Hits[0].Source.event(), nil
}

// search runs a search request body against index and decodes the response into out.
func (s *Store) search(ctx context.Context, index string, body any, out any, opts ...func(*esapi.SearchRequest)) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	all := []func(*esapi.SearchRequest){
		s.es.Search.WithContext(ctx),
		s.es.Search.WithBody(bytes.NewReader(b)),
		s.es.Search.WithIgnoreUnavailable(true),
		s.es.Search.WithAllowNoIndices(true),
	}
	if index != "" {
		all = append(all, s.es.Search.WithIndex(index))
	}
	res, err := s.es.Search(append(all, opts...)...)
	return decode(res, err, "search", out)
}

// doc is the shape of an event in Elasticsearch: @timestamp is the event's own time, the time
// field for Kibana. It never leaves the package: readers get event.Event, parsed here once.
type doc struct {
	ID         string `json:"id"`
	ClientID   string `json:"clientId"`
	Type       string `json:"type,omitempty"`
	Timestamp  string `json:"@timestamp"`
	IngestedAt string `json:"ingestedAt"`
	// IDHash is event.IDHash(ID), summed by archive verification; not part of the API's event.
	IDHash  int64           `json:"idHash"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// toDoc converts an event to its document, with times at storage precision.
func toDoc(e event.Event) doc {
	return doc{
		ID:         e.ID,
		ClientID:   e.ClientID,
		Type:       e.Type,
		Timestamp:  event.Truncate(e.Timestamp).Format(event.TimeFormat),
		IngestedAt: event.Truncate(e.IngestedAt).Format(event.TimeFormat),
		IDHash:     event.IDHash(e.ID),
		Payload:    e.Payload,
	}
}

// event converts a document back to the API's event.
func (d doc) event() event.Event {
	ts, _ := time.Parse(time.RFC3339Nano, d.Timestamp)
	ing, _ := time.Parse(time.RFC3339Nano, d.IngestedAt)
	return event.Event{ID: d.ID, ClientID: d.ClientID, Type: d.Type, Timestamp: ts.UTC(), IngestedAt: ing.UTC(), Payload: d.Payload}
}

type searchResponse struct {
	Hits struct {
		Total struct {
			Value    int64  `json:"value"`
			Relation string `json:"relation"`
		} `json:"total"`
		Hits []struct {
			Index  string            `json:"_index"`
			ID     string            `json:"_id"`
			SeqNo  int64             `json:"_seq_no"`
			Source doc               `json:"_source"`
			Sort   []json.RawMessage `json:"sort"`
		} `json:"hits"`
	} `json:"hits"`
	PitID string `json:"pit_id"`
}

// check turns a transport error or a non-2xx response into an error and closes the body.
// Unreachable clusters and 429/5xx answers wrap event.ErrUnavailable.
func check(res *esapi.Response, err error, op string) error {
	return decode(res, err, op, nil)
}

// decode is check plus decoding a 2xx body into out (when out is not nil).
func decode(res *esapi.Response, err error, op string, out any) error {
	if err != nil {
		return fmt.Errorf("%s: %w: %w", op, event.ErrUnavailable, err)
	}
	defer res.Body.Close()
	if res.IsError() {
		return responseError(res, op)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		return nil
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		return fmt.Errorf("%s: decode response: %w", op, err)
	}
	return nil
}

// StatusError is a non-2xx answer from Elasticsearch.
type StatusError struct {
	Op     string
	Status int
	Type   string
	Reason string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: elasticsearch %d %s: %s", e.Op, e.Status, e.Type, e.Reason)
}

// Is makes overloaded and failing clusters match event.ErrUnavailable.
func (e *StatusError) Is(target error) bool {
	return target == event.ErrUnavailable && (e.Status == http.StatusTooManyRequests || e.Status >= 500)
}

func responseError(res *esapi.Response, op string) error {
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var e struct {
		Error struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
	}
	se := &StatusError{Op: op, Status: res.StatusCode}
	if json.Unmarshal(body, &e) == nil && e.Error.Type != "" {
		se.Type, se.Reason = e.Error.Type, e.Error.Reason
	} else {
		se.Reason = strings.TrimSpace(string(body))
	}
	return se
}
