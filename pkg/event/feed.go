package event

import "time"

// The archive's vocabulary with Elasticsearch: daily indices, their shards and sequence numbers
// (the gap-free feed the archiver and the live stream follow), and retention's record of deleted
// days. esstore implements it; the archive and search roles speak it.

// Shard is one shard of a daily event index with its positions.
type Shard struct {
	Index     string
	IndexUUID string // an index deleted and recreated under one name gets a new UUID
	Shard     int
	// GlobalCheckpoint: every operation with _seq_no ≤ it is durable on all in-sync copies.
	GlobalCheckpoint int64
	MaxSeqNo         int64
}

// FeedQuery asks for the events of one shard with After < _seq_no ≤ UpTo, in _seq_no order.
type FeedQuery struct {
	Index string
	Shard int
	After int64 // exclusive; -1 reads from the start
	UpTo  int64 // inclusive; normally the global checkpoint read before the refresh
	Size  int
	// Optional filters (structured term/range filters; nothing is parsed as query syntax).
	ClientIDs    []string
	Types        []string
	IngestedFrom time.Time // inclusive, zero for none
}

// Sequenced is an event with its shard sequence number.
type Sequenced struct {
	SeqNo int64
	Event Event
}

// ShardCount counts one range's events in one shard.
type ShardCount struct {
	Total int64 // every visible event
	UpTo  int64 // those with _seq_no ≤ the bound given (the archived part, by checkpoint)
	// UpToHash is the sum of the IDHash of the UpTo events (an event stored without its digest
	// counts 0).
	UpToHash int64
}

// DailyIndex is one daily event index as the cluster metadata describes it, open or closed.
type DailyIndex struct {
	Name      string
	UUID      string
	Day       time.Time // the UTC day whose events it holds: [Day, Day+24h)
	Open      bool
	Health    string // green, yellow or red
	Primaries int
	Docs      int64 // -1 when the cluster cannot tell (a closed index)
}

// Drop is one daily index deleted by retention, as the retention log records it.
type Drop struct {
	Index string    `json:"index"`
	Day   time.Time `json:"day"`
	// Docs and IDHash are the index's events and the sum of their id digests when it was
	// verified before deletion.
	Docs   int64 `json:"docs"`
	IDHash int64 `json:"idHash"`
	// Boundary is the cold boundary retention had recorded before deleting.
	Boundary  time.Time `json:"boundary"`
	DeletedAt time.Time `json:"deletedAt"`
}

// DocRef names one stored event document: its daily index and id.
type DocRef struct {
	Index, ID string
}
