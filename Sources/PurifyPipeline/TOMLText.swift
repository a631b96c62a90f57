/// Checks on TOML text before it reaches the parser.
public enum TOMLText {
    /// Where `text` holds a character TOML allows nowhere unescaped (a control character other
    /// than tab, line feed and carriage return, or DEL), as a message naming its line and
    /// column; `nil` when there is none.
    ///
    /// The TOML parser (toml++ inside TOMLKit) stops the process on an assertion for some keys
    /// holding such characters instead of reporting an error, so every caller checks first.
    public static func forbiddenCharacter(in text: String) -> String? {
        var line = 1
        var column = 1
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x0A:
                line += 1
                column = 0
            case 0x09, 0x0D:
                break
            case 0x00...0x1F, 0x7F:
                let code = String(scalar.value, radix: 16, uppercase: true)
                return "line \(line), column \(column): control character U+\(String(repeating: "0", count: 4 - code.count))\(code) is not allowed in TOML"
            default:
                break
            }
            column += 1
        }
        return nil
    }
}
