import Foundation
import PurifyControl
import Testing

@Suite("JSON values")
struct JSONValueTests {
    @Test("serialization escapes strings, sorts keys and puts leading keys first")
    func serialize() {
        let value: JSONValue = ["ok": true, "id": 7, "b": ["x\"y\\z\n\u{1}", .null, 1.5], "a": [:]]
        #expect(value.serialized() == #"{"a":{},"b":["x\"y\\z\n\u0001",null,1.5],"id":7,"ok":true}"#)
        #expect(value.serialized(leadingKeys: ["id", "ok"]) == #"{"id":7,"ok":true,"a":{},"b":["x\"y\\z\n\u0001",null,1.5]}"#)
        #expect(JSONValue.double(.nan).serialized() == "null")
    }

    @Test("decoding keeps integers, floats and booleans apart and round-trips")
    func decode() throws {
        let text = #"{"i":1,"d":1.25,"t":true,"f":false,"n":null,"s":"é","a":[1,"2"],"o":{"k":-3}}"#
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(value == ["i": 1, "d": 1.25, "t": true, "f": false, "n": .null, "s": "é", "a": [1, "2"], "o": ["k": -3]])
        #expect(try JSONDecoder().decode(JSONValue.self, from: Data(value.serialized().utf8)) == value)
    }
}
