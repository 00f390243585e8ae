"""`deeplens report`: a static HTML review report of the duplicate groups (build.py writes it from
template.html and page.js), opened from disk with no server and no network."""
