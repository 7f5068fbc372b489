use super::*;

#[test]
fn smoke() {
    let html = b"<html><head><title>T</title></head><body><nav><a href=/>Home</a> <a href=/x>News</a></nav><article><h1>Title here</h1><p>This is a long enough paragraph of article text, with commas, and more words to pass.</p><p>Another paragraph that is also long enough to count as good text in the page.</p></article><footer>Copyright 2024 Example Inc. All rights reserved by the example company.</footer></body></html>";
    let e = extract_document(html, None, None, &ExtractOptions::default()).unwrap();
    assert_eq!(e.text, "Title here\nThis is a long enough paragraph of article text, with commas, and more words to pass.\nAnother paragraph that is also long enough to count as good text in the page.");
}
