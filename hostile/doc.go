// Package hostile has no code, only tests: they run the hostile-input corpus in
// testdata/hostile against the ingest and search binaries, built and started as in production
// (real HTTP, real Elasticsearch, short read timeouts), while valid events flow in other
// requests. Every case must get a clear 4xx — never a 5xx, a hang or a crash — and store nothing,
// or, for hostile-looking but legal values (query syntax or SQL in a clientId, integers beyond
// int64), be stored verbatim and match only itself. The corpus's request bodies and cursors
// also seed the event decoder's and the cursor decoder's fuzz tests (TestFuzzSeedsIncludeCorpus).
package hostile
