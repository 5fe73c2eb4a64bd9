package deploy

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Realistic event payloads for the storage measurements behind docs/heroku.md. Compression —
// lz4 in PostgreSQL's TOAST, LZ4 in Elasticsearch's stored fields — depends entirely on what
// the bytes are: random letters compress like nothing real, a run of one letter like nothing
// real either. These payloads are shaped like a commerce/analytics event stream: nested
// objects with repeated keys, enumerations (event names, currencies, countries, user agents),
// product names built from a vocabulary, URLs with paths and query strings, and the
// high-entropy parts real events carry (UUIDs, hashes, IP addresses, prices, timestamps).

var (
	eventNames = []string{"page_view", "product_view", "add_to_cart", "remove_from_cart", "checkout_started",
		"payment_submitted", "order_completed", "search", "login", "signup", "wishlist_add", "review_submitted"}
	userAgents = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
		"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
		"ShopApp/5.12.3 (iPhone14,3; iOS 17.4.1; Scale/3.00)",
		"ShopApp/5.11.0 (Android 13; SM-S911B; okhttp/4.12.0)",
	}
	locales    = []string{"en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "it-IT", "nl-NL", "pl-PL", "sv-SE", "ja-JP"}
	currencies = []string{"EUR", "USD", "GBP", "SEK", "PLN", "JPY"}
	countries  = []string{"DE", "FR", "GB", "US", "ES", "IT", "NL", "PL", "SE", "JP", "AT", "BE"}
	adjectives = []string{"classic", "lightweight", "waterproof", "organic", "slim-fit", "wireless", "stainless", "recycled",
		"ergonomic", "vintage", "premium", "compact", "insulated", "breathable", "handmade", "foldable"}
	nouns = []string{"running shoe", "rain jacket", "coffee grinder", "desk lamp", "backpack", "wool sweater", "water bottle",
		"headphones", "yoga mat", "chef's knife", "phone case", "sunglasses", "travel mug", "bike helmet", "linen shirt", "sneaker"}
	colors     = []string{"black", "white", "navy", "olive", "sand", "burgundy", "grey melange", "forest green", "sky blue"}
	categories = []string{"shoes/running", "apparel/outerwear", "home/kitchen", "home/lighting", "bags/backpacks",
		"apparel/knitwear", "sports/outdoor", "electronics/audio", "sports/yoga", "accessories/eyewear"}
	channels = []string{"organic", "paid_search", "email", "social", "direct", "affiliate", "push"}
	searches = []string{"red running shoes", "waterproof jacket men", "gift for dad", "espresso grinder", "laptop backpack 15 inch",
		"wool socks", "wireless earbuds noise cancelling", "yoga mat thick"}
)

// realisticPayload returns a JSON object of about size bytes (never less than ~450), drawn
// from r, so the same seed gives the same bytes.
func realisticPayload(r *rand.Rand, size int) json.RawMessage {
	pick := func(list []string) string { return list[r.IntN(len(list))] }
	id := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return hex.EncodeToString(b)
	}
	uuid := func() string {
		s := id(16)
		return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
	}
	price := func() float64 { return float64(r.IntN(30000)+199) / 100 }
	ts := time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(int64(24 * time.Hour))))
	name := pick(eventNames)
	p := map[string]any{
		"event":       name,
		"schema":      "com.example.shop/" + name + "/jsonschema/1-0-3",
		"occurred_at": ts.Format(time.RFC3339Nano),
		"sent_at":     ts.Add(time.Duration(r.IntN(3000)) * time.Millisecond).Format(time.RFC3339Nano),
		"user": map[string]any{
			"id": fmt.Sprintf("u_%08d", r.IntN(50_000_000)), "anonymous_id": uuid(), "email_sha256": id(32),
			"segment": pick([]string{"new", "returning", "loyal", "churn_risk"}), "plan": pick([]string{"free", "plus", "pro"}),
			"country": pick(countries), "consent": map[string]bool{"analytics": true, "marketing": r.IntN(2) == 0},
		},
		"session": map[string]any{
			"id": uuid(), "started_at": ts.Add(-time.Duration(r.IntN(3600)) * time.Second).Format(time.RFC3339),
			"ip":         fmt.Sprintf("%d.%d.%d.%d", 1+r.IntN(223), r.IntN(256), r.IntN(256), 1+r.IntN(254)),
			"user_agent": pick(userAgents), "locale": pick(locales), "page_views": r.IntN(40) + 1,
			"utm": map[string]string{"source": pick([]string{"google", "newsletter", "instagram", "partner-42"}),
				"medium": pick(channels), "campaign": fmt.Sprintf("spring-sale-%d", 2020+r.IntN(7))},
		},
		"page": map[string]any{
			"url":      fmt.Sprintf("https://shop.example.com/%s/p/%d?ref=%s&variant=%d", pick(categories), 100000+r.IntN(900000), pick(channels), r.IntN(12)),
			"referrer": fmt.Sprintf("https://www.%s.com/search?q=%s", pick([]string{"google", "bing", "duckduckgo"}), strings.ReplaceAll(pick(searches), " ", "+")),
			"title":    fmt.Sprintf("%s %s %s | Example Shop", strings.ToUpper(pick(adjectives)[:1])+pick(adjectives)[1:], pick(colors), pick(nouns)),
		},
		"context": map[string]any{
			"app":    map[string]string{"name": "ShopApp", "version": fmt.Sprintf("5.%d.%d", r.IntN(13), r.IntN(6)), "build": fmt.Sprintf("%d", 20000+r.IntN(9999))},
			"device": map[string]any{"type": pick([]string{"mobile", "desktop", "tablet"}), "screen": map[string]int{"width": 360 + r.IntN(2200), "height": 640 + r.IntN(1000)}},
			"experiments": []map[string]string{{"id": "exp_checkout_v3", "variant": pick([]string{"control", "treatment"})},
				{"id": "exp_reco_model", "variant": pick([]string{"baseline", "two-tower", "popular"})}},
			"timing_ms": map[string]int{"dns": r.IntN(80), "tls": r.IntN(120), "ttfb": 40 + r.IntN(900), "dom_ready": 300 + r.IntN(4000)},
		},
	}
	if size < 2000 { // a slimmer event: what a mobile SDK sends for a tap
		delete(p, "context")
		delete(p, "schema")
		delete(p, "page")
		p["user"] = map[string]any{"id": fmt.Sprintf("u_%08d", r.IntN(50_000_000)), "country": pick(countries)}
		p["session"] = map[string]any{"id": uuid(), "locale": pick(locales), "app_version": fmt.Sprintf("5.%d.%d", r.IntN(13), r.IntN(6))}
	}
	// Cart lines (or search results) until the payload reaches its size.
	currency := pick(currencies)
	var items []map[string]any
	total := 0.0
	grow := func() {
		q := 1 + r.IntN(3)
		pr := price()
		total += pr * float64(q)
		items = append(items, map[string]any{
			"sku": fmt.Sprintf("SKU-%06d-%s", r.IntN(1000000), strings.ToUpper(pick(colors)[:2])), "name": fmt.Sprintf("%s %s %s, size %d",
				pick(adjectives), pick(colors), pick(nouns), 36+r.IntN(12)), "category": pick(categories), "quantity": q,
			"unit_price": pr, "currency": currency, "discount": map[string]any{"code": pick([]string{"", "SPRING10", "WELCOME5", "VIP20"}), "amount": float64(r.IntN(500)) / 100},
			"availability": pick([]string{"in_stock", "low_stock", "backorder"}), "warehouse": pick(countries) + "-" + fmt.Sprint(1+r.IntN(4)),
		})
	}
	for {
		p["order"] = map[string]any{"id": fmt.Sprintf("ORD-%d-%s", 2026, id(5)), "currency": currency, "items": items,
			"total": float64(int(total*100)) / 100, "shipping": map[string]any{"method": pick([]string{"standard", "express", "pickup"}), "country": pick(countries)}}
		b, err := json.Marshal(p)
		if err != nil {
			panic(err)
		}
		if len(b) >= size-150 { // a line is ~300 bytes: stop within half a line of the target
			return b
		}
		grow()
	}
}
