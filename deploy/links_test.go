package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMarkdownLinks keeps the documentation's links true: every relative link of the README and
// the pages beside it names a file that exists, and every #anchor a heading of that file (GitHub's
// anchors: lower case, punctuation dropped, spaces as hyphens).
func TestMarkdownLinks(t *testing.T) {
	pages, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, top := range []string{"README.md", "BENCHMARKS.md", "RELIABILITY.md", "SCALING.md", "CHANGELOG.md"} {
		if _, err := os.Stat(filepath.Join(root, top)); err == nil {
			pages = append(pages, filepath.Join(root, top))
		}
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a := map[string]bool{}
		b, _ := os.ReadFile(path)
		inCode := false
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "```") {
				inCode = !inCode
			}
			if !inCode && strings.HasPrefix(line, "#") {
				a[githubAnchor(strings.TrimLeft(line, "#"))] = true
			}
		}
		anchors[path] = a
		return a
	}
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, page)
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s: link %q: no such file", rel, target)
					continue
				}
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !anchorsOf(path)[anchor] {
				t.Errorf("%s: link %q: no heading with that anchor", rel, target)
			}
		}
	}
}

var anchorDrop = regexp.MustCompile(`[^\p{L}\p{N}\- _]`)

func githubAnchor(heading string) string {
	h := strings.ToLower(strings.TrimSpace(heading))
	return strings.ReplaceAll(anchorDrop.ReplaceAllString(h, ""), " ", "-")
}
