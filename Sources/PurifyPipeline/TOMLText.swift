/// Checks on TOML text before it reaches the parser.
public enum TOMLText {
    /// Where `text` breaks a rule of TOML that the parser (toml++ inside TOMLKit) does not
    /// report but stops the process on, through an assertion, as a message naming the line and
    /// column; `nil` when there is none. Two rules: no control character other than tab, line
    /// feed and carriage return, and no DEL, anywhere; and outside multi-line strings, a line
    /// begins with an ASCII character (a key, a value, a bracket or a comment), and each key of a
    /// table header with a bare-key character or a quote.
    public static func forbiddenCharacter(in text: String) -> String? {
        var insideMultilineString = false
        // Split on the scalar, not the Character: "\r\n" is one Character.
        for (index, lineScalars) in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let line = Substring(Substring.UnicodeScalarView(lineScalars))
            for (offset, scalar) in line.unicodeScalars.enumerated() {
                switch scalar.value {
                case 0x09, 0x0D: break
                case 0x00...0x1F, 0x7F:
                    let code = String(scalar.value, radix: 16, uppercase: true)
                    return "line \(number), column \(offset + 1): control character U+\(String(repeating: "0", count: 4 - code.count))\(code) is not allowed in TOML"
                default: break
                }
            }
            if !insideMultilineString, let problem = nonASCIIStart(of: line) {
                return "line \(number), column \(problem): a key must begin with a letter, digit, _, - or a quote"
            }
            // An odd number of triple quotes opens or closes a multi-line string.
            if (occurrences(of: "\"\"\"", in: line) + occurrences(of: "'''", in: line)) % 2 == 1 {
                insideMultilineString.toggle()
            }
        }
        return nil
    }

    private static func occurrences(of delimiter: String, in line: Substring) -> Int {
        let pattern = Array(delimiter.utf8)
        let bytes = Array(line.utf8)
        var count = 0
        var index = 0
        while index + pattern.count <= bytes.count {
            if bytes[index..<(index + pattern.count)].elementsEqual(pattern) {
                count += 1
                index += pattern.count
            } else {
                index += 1
            }
        }
        return count
    }

    /// The column where a line begins with a non-ASCII character, or where a key of a table
    /// header (`[a.b]`, `[[a]]`) begins with anything but a bare-key character or a quote.
    private static func nonASCIIStart(of line: Substring) -> Int? {
        let scalars = Array(line.unicodeScalars)
        var index = 0
        while index < scalars.count, scalars[index] == " " || scalars[index] == "\t" { index += 1 }
        guard index < scalars.count else { return nil }
        guard scalars[index].isASCII else { return index + 1 }
        guard scalars[index] == "[" else { return nil }
        index += 1
        if index < scalars.count, scalars[index] == "[" { index += 1 }
        // Each key of the header: a bare key or a quoted one, joined by dots.
        while true {
            while index < scalars.count, scalars[index] == " " || scalars[index] == "\t" { index += 1 }
            guard index < scalars.count else { return nil }
            let first = scalars[index]
            if first == "\"" || first == "'" {
                index += 1
                while index < scalars.count, scalars[index] != first { index += scalars[index] == "\\" ? 2 : 1 }
                index += 1
            } else if isBareKeyCharacter(first) {
                while index < scalars.count, isBareKeyCharacter(scalars[index]) { index += 1 }
            } else {
                return index + 1
            }
            while index < scalars.count, scalars[index] == " " || scalars[index] == "\t" { index += 1 }
            guard index < scalars.count, scalars[index] == "." else { return nil }
            index += 1
        }
    }

    private static func isBareKeyCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "A"..."Z", "a"..."z", "0"..."9", "_", "-": true
        default: false
        }
    }
}
