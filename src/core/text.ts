/**
 * A text file's bytes as a string, without the UTF-8 byte-order mark that some editors and exporters
 * (Notepad, Excel's "CSV UTF-8", PowerShell's Out-File) put first: it marks the encoding, it is not
 * content, and JSON.parse rejects a line that starts with it. TextDecoder drops it (ignoreBOM is false).
 */
export function utf8Text(raw: Uint8Array): string {
  return new TextDecoder("utf-8").decode(raw);
}
