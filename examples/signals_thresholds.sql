SELECT id FROM VERSION WHERE
-- datatrove 0.10.1's default thresholds of GopherRepetitionFilter, GopherQualityFilter,
-- FineWebQualityFilter and C4QualityFilter(filter_no_terminal_punct=False), written over the
-- `signals` that those four stages write with `mode: annotate` (examples/signals.yaml):
-- the rows it selects are the rows drop mode keeps (tests/cli.rs, bench/annotate_parity.sh).
-- Null measurements (undefined, e.g. on an empty text) fail a comparison, as datatrove drops
-- such texts; the two coalesce() calls keep datatrove's passes (fewer words than the n-gram,
-- no non-symbol word).
--   smelt sql "$(sed 's/VERSION/"signals@latest"/' examples/signals_thresholds.sql)"   (the version after FROM)
  signals['repetition_dup_para_frac'] <= 0.3 AND signals['repetition_dup_para_char_frac'] <= 0.2
  AND signals['repetition_dup_line_frac'] <= 0.3 AND signals['repetition_dup_line_char_frac'] <= 0.2
  AND coalesce(signals['repetition_top_2_gram_char_frac'], 0) <= 0.2
  AND coalesce(signals['repetition_top_3_gram_char_frac'], 0) <= 0.18
  AND coalesce(signals['repetition_top_4_gram_char_frac'], 0) <= 0.16
  AND signals['repetition_dup_5_gram_char_frac'] <= 0.15 AND signals['repetition_dup_6_gram_char_frac'] <= 0.14
  AND signals['repetition_dup_7_gram_char_frac'] <= 0.13 AND signals['repetition_dup_8_gram_char_frac'] <= 0.12
  AND signals['repetition_dup_9_gram_char_frac'] <= 0.11 AND signals['repetition_dup_10_gram_char_frac'] <= 0.10
  AND signals['gopher_word_count'] BETWEEN 50 AND 100000
  AND coalesce(signals['gopher_mean_word_length'], 5) BETWEEN 3 AND 10
  AND signals['gopher_hash_word_ratio'] <= 0.1 AND signals['gopher_ellipsis_word_ratio'] <= 0.1
  AND signals['gopher_bullet_lines_ratio'] <= 0.9 AND signals['gopher_ellipsis_lines_ratio'] <= 0.3
  AND signals['gopher_alpha_words_ratio'] >= 0.8 AND signals['gopher_stop_words'] >= 2
  AND signals['fineweb_line_punct_ratio'] >= 0.12 AND signals['fineweb_short_line_ratio'] <= 0.67
  AND signals['fineweb_char_dup_ratio'] <= 0.01 AND signals['fineweb_newline_word_ratio'] <= 0.3
  AND signals['c4_lorem_ipsum'] = 0 AND signals['c4_curly_bracket'] = 0 AND signals['c4_sentences'] >= 5
ORDER BY id
