# Shell quoting for the generated scripts.
rec {
  # `s` as one POSIX shell word.
  quote = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString s) + "'";

  # A list of words, quoted, on one line.
  words = list: builtins.concatStringsSep " " (map quote list);
}
