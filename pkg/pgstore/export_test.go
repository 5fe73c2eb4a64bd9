package pgstore

// CountRangesQuery exposes CountRanges' statement to the plan test.
var CountRangesQuery = countRangesQuery
