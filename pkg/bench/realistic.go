package bench

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Realistic draws event payloads shaped like the users' traffic rather than random letters:
// a storefront's app and web telemetry — session and device, user, page, a cart of line items
// from a catalogue, experiments, timings — with the repetition of keys and vocabulary that real
// JSON has and that compression feeds on. Sizes vary around a target (about ±20%). It is
// deterministic for a seed, so storage figures can be reproduced. Not safe for concurrent use.
type Realistic struct {
	rng    *rand.Rand
	target int
}

// NewRealistic makes a generator of payloads of about target bytes of compact JSON.
func NewRealistic(seed uint64, target int) *Realistic {
	return &Realistic{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), target: max(target, 400)}
}

var (
	rOS       = []string{"Android", "iOS", "Windows", "macOS", "Linux"}
	rModels   = []string{"Pixel 8", "Pixel 7a", "iPhone 15", "iPhone 13 mini", "Galaxy S23", "Galaxy A54", "ThinkPad X1", "MacBook Air", "Surface Laptop 5"}
	rLocales  = []string{"de-DE", "en-US", "en-GB", "fr-FR", "es-ES", "it-IT", "nl-NL", "pl-PL", "sv-SE"}
	rZones    = []string{"Europe/Berlin", "America/New_York", "Europe/London", "Europe/Paris", "Europe/Madrid", "Europe/Rome", "Europe/Amsterdam", "Europe/Warsaw"}
	rCities   = []string{"Hamburg", "Berlin", "Munich", "New York", "Chicago", "London", "Manchester", "Paris", "Lyon", "Madrid", "Milan", "Amsterdam", "Warsaw", "Stockholm"}
	rTiers    = []string{"free", "silver", "gold", "platinum"}
	rEvents   = []string{"page_view", "add_to_cart", "remove_from_cart", "checkout_started", "payment_submitted", "order_completed", "search", "product_view"}
	rPaths    = []string{"/", "/category/shoes", "/category/shoes/running", "/category/jackets", "/product/", "/cart", "/checkout/shipping", "/checkout/payment", "/search", "/account/orders"}
	rRefs     = []string{"https://www.google.com/", "https://duckduckgo.com/", "https://www.instagram.com/", "https://newsletter.example.com/2026-05", "", "https://shop.example.com/"}
	rProducts = []struct{ sku, name, category string }{
		{"SKU-10293", "Trail Running Shoe", "shoes/running"}, {"SKU-10311", "Road Running Shoe Pro", "shoes/running"},
		{"SKU-20417", "Waterproof Hiking Jacket", "jackets/outdoor"}, {"SKU-20502", "Lightweight Down Vest", "jackets/outdoor"},
		{"SKU-30088", "Merino Base Layer Top", "apparel/base-layers"}, {"SKU-30121", "Compression Running Tights", "apparel/running"},
		{"SKU-40007", "Hydration Pack 12L", "accessories/packs"}, {"SKU-40090", "Headlamp 400 Lumen", "accessories/lights"},
		{"SKU-50233", "Trekking Poles Carbon", "accessories/hiking"}, {"SKU-60419", "Sports Watch GPS", "electronics/wearables"},
	}
	rColors      = []string{"black", "blue", "red", "green", "grey", "orange", "white"}
	rExperiments = []string{"checkout_v2", "free_shipping_banner", "search_ranking_ml", "product_page_reviews_top", "one_click_reorder"}
	rTags        = []string{"returning", "mobile", "promo", "newsletter", "loyalty", "eu", "us", "high-value", "first-order", "gift"}
	rUAs         = []string{
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
	}
)

func (r *Realistic) pick(s []string) string { return s[r.rng.IntN(len(s))] }

func (r *Realistic) hex(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[r.rng.IntN(16)]
	}
	return string(b)
}

// Payload draws one payload: compact JSON, keys in a fixed order.
func (r *Realistic) Payload(at time.Time) []byte {
	var b strings.Builder
	b.Grow(r.target + 512)
	q := strconv.Quote
	os := r.rng.IntN(len(rOS))
	fmt.Fprintf(&b, `{"event":%s,"schemaVersion":3,"occurredAt":%s,`, q(r.pick(rEvents)), q(at.UTC().Format(time.RFC3339Nano)))
	fmt.Fprintf(&b, `"session":{"id":%s,"startedAt":%s,"seq":%d,"device":{"os":%s,"osVersion":"%d.%d","model":%s,"appVersion":"5.%d.%d","locale":%s,"timezone":%s,"screen":{"w":%d,"h":%d,"dpr":%.1f},"userAgent":%s}},`,
		q(r.hex(8)+"-"+r.hex(4)+"-"+r.hex(4)+"-"+r.hex(4)+"-"+r.hex(12)), q(at.Add(-time.Duration(r.rng.IntN(3600))*time.Second).UTC().Format(time.RFC3339)),
		r.rng.IntN(400), q(rOS[os]), 10+r.rng.IntN(8), r.rng.IntN(5), q(r.pick(rModels)), 8+r.rng.IntN(6), r.rng.IntN(20),
		q(r.pick(rLocales)), q(r.pick(rZones)), []int{390, 412, 1280, 1440, 1920}[r.rng.IntN(5)], []int{844, 915, 800, 900, 1080}[r.rng.IntN(5)],
		[]float64{1, 2, 2.6, 3}[r.rng.IntN(4)], q(rUAs[r.rng.IntN(len(rUAs))]))
	fmt.Fprintf(&b, `"user":{"id":"u-%07d","tier":%s,"country":%s,"city":%s,"consent":{"analytics":%t,"marketing":%t},"lifetimeOrders":%d},`,
		r.rng.IntN(5_000_000), q(r.pick(rTiers)), q([]string{"DE", "US", "GB", "FR", "ES", "IT", "NL", "PL", "SE"}[r.rng.IntN(9)]),
		q(r.pick(rCities)), r.rng.IntN(10) > 1, r.rng.IntN(10) > 5, r.rng.IntN(60))
	path := r.pick(rPaths)
	if path == "/product/" {
		path += strings.ToLower(rProducts[r.rng.IntN(len(rProducts))].sku)
	}
	fmt.Fprintf(&b, `"page":{"url":%s,"referrer":%s,"title":%s,"loadMs":%d,"ttfbMs":%d},`,
		q("https://shop.example.com"+path+"?utm_source="+[]string{"google", "newsletter", "instagram", "direct"}[r.rng.IntN(4)]+"&page="+strconv.Itoa(1+r.rng.IntN(5))),
		q(r.pick(rRefs)), q("Example Outdoor Shop – "+strings.ReplaceAll(strings.Trim(path, "/"), "/", " › ")),
		200+r.rng.IntN(3000), 20+r.rng.IntN(400))
	b.WriteString(`"experiments":[`)
	for i, e := range rExperiments[:1+r.rng.IntN(len(rExperiments))] {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":%s,"variant":%s}`, q(e), q([]string{"control", "A", "B"}[r.rng.IntN(3)]))
	}
	b.WriteString(`],"tags":[`)
	for i := range 1 + r.rng.IntN(4) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(q(r.pick(rTags)))
	}
	b.WriteString(`],"cart":{"currency":"EUR","items":[`)
	// Line items fill the payload up to its size, drawn around the target.
	size := r.target*4/5 + r.rng.IntN(r.target*2/5+1)
	total := 0.0
	for i := 0; b.Len() < size-120 || i == 0; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		p := rProducts[r.rng.IntN(len(rProducts))]
		price := float64(1999+r.rng.IntN(25000)) / 100
		qty := 1 + r.rng.IntN(3)
		total += price * float64(qty)
		fmt.Fprintf(&b, `{"line":%d,"sku":%s,"name":%s,"category":%s,"qty":%d,"unitPrice":%.2f,"attributes":{"color":%s,"size":%s},"discount":{"code":%s,"pct":%d},"inStock":%t}`,
			i+1, q(p.sku), q(p.name), q(p.category), qty, price, q(r.pick(rColors)),
			q([]string{"S", "M", "L", "XL", "40", "41", "42", "43", "44", "45"}[r.rng.IntN(10)]),
			q([]string{"", "SPRING10", "LOYAL15", "WELCOME5"}[r.rng.IntN(4)]), []int{0, 5, 10, 15}[r.rng.IntN(4)], r.rng.IntN(20) > 0)
	}
	fmt.Fprintf(&b, `],"total":%.2f},"timings":{"renderMs":%.1f,"apiMs":%d,"fps":%.1f}}`, total,
		float64(r.rng.IntN(5000))/10, 10+r.rng.IntN(800), 30+float64(r.rng.IntN(300))/10)
	return []byte(b.String())
}
