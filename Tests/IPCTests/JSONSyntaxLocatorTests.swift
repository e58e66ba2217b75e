import Testing

@testable import IPC

@Suite struct JSONSyntaxLocatorTests {
    @Test func acceptsTheJSON5ExtensionsTheLoaderAccepts() {
        let text = "{\n // comment\n /* block */ \"a\": 1, b: [1, 2,], 'c': 0x1F, \"d\": .5, \"e\": null,\n}\n"
        #expect(JSONSyntaxLocator.locate(text) == nil)
    }

    @Test(arguments: [
        ("{\n  \"a\": 1,\n  \"b\": [1,2\n  \"c\": 3\n}\n", 4, "expected ',' or ']'"),
        ("{\n  \"a\": 1\n  \"b\": 2\n}", 3, "expected ',' or '}'"),
        ("{\n  \"a\": tru\n}", 2, "'tru' is not a value"),
        ("{\n \"a\": \"open,\n}", 2, "string is not closed"),
        ("{\n \"a\" 1\n}", 2, "expected ':'"),
        ("{\n \"a\": {\n", 3, "missing '}'"),
        ("{} x", 1, "unexpected text"),
    ])
    func namesTheLineOfTheFirstProblem(text: String, line: Int, message: String) throws {
        let problem = try #require(JSONSyntaxLocator.locate(text))
        #expect(problem.line == line)
        #expect(problem.message.contains(message))
    }

    @Test func theLoaderReportsTheLine() {
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(text: "{\n\"smtpPort\": 25\n\"x\": 1}") }
        do {
            _ = try ConfigLoader.parse(text: "{\n\"smtpPort\": 25\n\"x\": 1}")
        } catch let error as ConfigError {
            #expect(error.line == 3)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
}
